// The HTTP edges' method + path router (src/http/router.ts).
import { describe, expect, it } from 'vitest';
import { Router } from '../../src/http/router.ts';

const router = new Router<string>()
  .add('POST', 'open', () => 'open')
  .add('POST', 'room/:room', ({ room }, ctx) => `room ${room} ${ctx}`)
  .add('DELETE', ':id', ({ id }) => `delete ${id}`)
  .add(['POST', 'DELETE'], ':id/connect', ({ id }) => `connect ${id}`)
  .add('GET', '', () => 'root');

function run(method: string, path: string): unknown {
  const m = router.match(method, path.split('/').filter(Boolean));
  return m ? m.handle(m.params, 'ctx') : undefined;
}

describe('Router', () => {
  it('answers with the first route whose method and pattern match, with its :name values and the context', () => {
    expect(run('POST', 'open')).toBe('open');
    expect(run('POST', 'room/r1')).toBe('room r1 ctx');
    expect(run('DELETE', 'TS_1')).toBe('delete TS_1');
    expect(run('POST', 'TS_1/connect')).toBe('connect TS_1');
    expect(run('DELETE', 'TS_1/connect')).toBe('connect TS_1');
    expect(run('GET', '')).toBe('root');
  });

  it('a literal segment does not hide a later :name route for another method, and order decides among matches', () => {
    // DELETE /open is no "open" route: it is the DELETE of a session named "open".
    expect(run('DELETE', 'open')).toBe('delete open');
    // POST /room/connect matches room/:room, added before :id/connect.
    expect(run('POST', 'room/connect')).toBe('room connect ctx');
    expect(run('DELETE', 'room/connect')).toBe('connect room');
  });

  it('matches nothing for another method, more or fewer segments, or another literal', () => {
    expect(run('GET', 'open')).toBeUndefined();
    expect(run('POST', 'TS_1/connect/extra')).toBeUndefined();
    expect(run('POST', 'room')).toBeUndefined();
    expect(run('POST', 'TS_1/other')).toBeUndefined();
  });

  it('says which methods a path has, for a 405', () => {
    expect(router.allowed(['open'])).toEqual(['POST', 'DELETE']);
    expect(router.allowed(['x', 'connect'])).toEqual(['POST', 'DELETE']);
    expect(router.allowed([])).toEqual(['GET']);
    expect(router.allowed(['a', 'b', 'c'])).toEqual([]);
  });
});
