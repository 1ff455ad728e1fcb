import { afterEach, describe, expect, it, vi } from 'vitest';
import { TypedEmitter } from '../../src/emitter.ts';

type Events = { ping: [n: number] };
class Pinger extends TypedEmitter<Events> {}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('TypedEmitter.safeEmit', () => {
  it('a throwing listener does not stop the others and goes to onListenerError', () => {
    const console = vi.spyOn(globalThis.console, 'error').mockImplementation(() => undefined);
    const seen: number[] = [];
    const errors: [string, unknown][] = [];
    const e = new Pinger().onListenerError((event, err) => errors.push([event, err]));
    const boom = new Error('boom');
    e.on('ping', () => {
      throw boom;
    });
    e.on('ping', (n) => seen.push(n));
    expect(() => e.safeEmit('ping', 1)).not.toThrow();
    expect(seen).toEqual([1]);
    expect(errors).toEqual([['ping', boom]]);
    expect(console).not.toHaveBeenCalled();
  });

  it('without onListenerError the error is logged, not lost', () => {
    const console = vi.spyOn(globalThis.console, 'error').mockImplementation(() => undefined);
    const e = new Pinger();
    const boom = new Error('boom');
    e.once('ping', () => {
      throw boom;
    });
    expect(() => e.safeEmit('ping', 1)).not.toThrow();
    expect(console).toHaveBeenCalledTimes(1);
    expect(console.mock.calls[0]).toEqual(["Pinger: a 'ping' listener threw", boom]);
    e.safeEmit('ping', 2); // once: gone
    expect(console).toHaveBeenCalledTimes(1);
  });

  it('a throwing error handler is logged too, and safeEmit still does not throw', () => {
    const console = vi.spyOn(globalThis.console, 'error').mockImplementation(() => undefined);
    const e = new Pinger().onListenerError(() => {
      throw new Error('handler broke');
    });
    const boom = new Error('boom');
    e.on('ping', () => {
      throw boom;
    });
    expect(() => e.safeEmit('ping', 1)).not.toThrow();
    expect(console).toHaveBeenCalledTimes(1);
    expect(console.mock.calls[0]?.[2]).toBe(boom);
  });
});
