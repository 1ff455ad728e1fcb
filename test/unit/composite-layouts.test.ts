// Layout templates: geometry from a room snapshot, and layout names (variants, unknown names).
import { describe, expect, it } from 'vitest';
import { loadLayout, resolveLayout } from '../../src/egress/composite/templates.ts';
import type { SnapshotParticipant } from '../../src/egress/composite/types.ts';

const person = (identity: string, i: number, opts: { video?: boolean; screen?: boolean } = { video: true }): SnapshotParticipant => ({
  identity,
  name: identity.toUpperCase(),
  joinedAt: i,
  tracks: [
    ...(opts.video ? [{ sid: `TR_${identity}_cam`, kind: 'video' as const, source: 'camera' as const, muted: false, flowing: true }] : []),
    ...(opts.screen ? [{ sid: `TR_${identity}_screen`, kind: 'video' as const, source: 'screen_share' as const, muted: false, flowing: true }] : []),
    { sid: `TR_${identity}_mic`, kind: 'audio' as const, source: 'microphone' as const, muted: false, flowing: true },
  ],
});
const room = (n: number) => Array.from({ length: n }, (_, i) => person(`p${i}`, i));
const load = async (name: string) => loadLayout(resolveLayout(name)!);

describe('layout templates', () => {
  it('resolves names, variants and refuses unknown ones', () => {
    expect(resolveLayout('grid')).toMatchObject({ name: 'grid', theme: 'dark' });
    expect(resolveLayout('speaker-light')).toMatchObject({ name: 'speaker-light', theme: 'light' });
    expect(resolveLayout('')?.name).toBe('speaker');
    expect(resolveLayout('mosaic')).toBeUndefined();
    expect(resolveLayout('../etc/passwd')).toBeUndefined();
  });

  it('grid: 1, 2, 4, 9, 16 tiles inside the canvas, without overlaps', async () => {
    const grid = await load('grid');
    for (const n of [1, 2, 3, 4, 9, 16, 20]) {
      const { tiles } = grid.plan({ participants: room(n), speakers: [], width: 1280, height: 720, theme: 'dark' });
      expect(tiles).toHaveLength(Math.min(n, 16));
      for (const t of tiles) expect(t.x >= 0 && t.y >= 0 && t.x + t.w <= 1280 && t.y + t.h <= 720).toBe(true);
      for (const a of tiles) for (const b of tiles) if (a !== b) expect(a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y).toBe(true);
    }
  });

  it('grid: a screen share takes the main area; a participant without video gets a name card', async () => {
    const grid = await load('grid');
    const ps = [person('a', 0, { screen: true, video: true }), person('b', 1, {})];
    const { tiles } = grid.plan({ participants: ps, speakers: [], width: 1280, height: 720, theme: 'light' });
    expect(tiles[0]).toMatchObject({ trackSid: 'TR_a_screen', fit: 'contain', x: 0, y: 0 });
    expect(tiles[0]!.w).toBeGreaterThan(900);
    const card = tiles.find((t) => t.identity === 'b')!;
    expect(card.trackSid).toBeUndefined();
    expect(card.label).toBe('B');
  });

  it('speaker and single-speaker follow the active speaker', async () => {
    const speaker = await load('speaker');
    const single = await load('single-speaker');
    const input = { participants: room(3), speakers: ['p2'], width: 1280, height: 720, theme: 'dark' as const };
    const s = speaker.plan(input).tiles;
    expect(s[0]).toMatchObject({ identity: 'p2', x: 0, y: 0 });
    expect(s[0]!.w).toBeGreaterThan(s[1]!.w * 3);
    expect(s.map((t) => t.identity)).toEqual(['p2', 'p0', 'p1']);
    expect(single.plan(input).tiles.map((t) => t.identity)).toEqual(['p2']);
  });
});
