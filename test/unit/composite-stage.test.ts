// A compositor run's stage: which later plans it shows in place (speaker changes) and which need a
// new run (joins, name cards moving, other audio); and the first frame's time read from MPEG-TS.
import { describe, expect, it } from 'vitest';
import { compositeFilter } from '../../src/egress/composite/filterGraph.ts';
import { selectionFor, stageFor } from '../../src/egress/composite/stage.ts';
import { loadLayout, resolveLayout } from '../../src/egress/composite/templates.ts';
import type { LayoutTemplate, SnapshotParticipant } from '../../src/egress/composite/types.ts';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { firstPts } from '../../src/media/mpegts.ts';

const person = (identity: string, i: number, video = true): SnapshotParticipant => ({
  identity,
  name: identity,
  joinedAt: i,
  tracks: [
    ...(video ? [{ sid: `V_${identity}`, kind: 'video' as const, source: 'camera' as const, muted: false, flowing: true }] : []),
    { sid: `A_${identity}`, kind: 'audio' as const, source: 'microphone' as const, muted: false, flowing: true },
  ],
});
const W = 1280;
const H = 720;
const planOf = (layout: LayoutTemplate, participants: SnapshotParticipant[], speaker?: string) =>
  layout.plan({ participants, speakers: speaker ? [speaker] : [], width: W, height: H, theme: 'dark' });
const videos = (ps: SnapshotParticipant[]) => ps.filter((p) => p.tracks.some((t) => t.kind === 'video')).map((p) => `V_${p.identity}`);
const audios = (ps: SnapshotParticipant[]) => ps.map((p) => `A_${p.identity}`);

describe('compositor stage', () => {
  it('speaker: every speaker change of the room is a switch of the same run', async () => {
    const speaker = await loadLayout(resolveLayout('speaker')!);
    const ps = [person('a', 1), person('b', 2), person('c', 3)];
    const variants = ps.map((p) => planOf(speaker, ps, p.identity));
    const stage = stageFor(planOf(speaker, ps, 'a'), variants, videos(ps), audios(ps));
    // Main tile: any of the three; each strip tile: two of them.
    expect(stage.slots.map((s) => s.candidates.length)).toEqual([3, 2, 2]);
    expect(stage.slots[0]!.candidates[0]).toBe('V_a');
    expect(selectionFor(stage, planOf(speaker, ps, 'a'), videos(ps), audios(ps))).toEqual([0, 0, 0]);
    for (const who of ['b', 'c']) {
      const sel = selectionFor(stage, planOf(speaker, ps, who), [...videos(ps)].reverse(), audios(ps))!;
      expect(sel).toBeDefined();
      expect(stage.slots.map((s, i) => s.candidates[sel[i]!])).toEqual(planOf(speaker, ps, who).tiles.map((t) => t.trackSid));
    }
    const encoding = { passthroughAllowed: false, width: W, height: H, framerate: 30, videoBitrate: 3000, audioBitrate: 128, audioFrequency: 48000, keyFrameInterval: 4, profile: 'high' as const };
    const { filter } = compositeFilter({ plan: planOf(speaker, ps, 'a'), stage, selection: [0, 0, 0], videoSids: videos(ps), audioCount: 3, encoding, audioOnly: false, videoOnly: false, t0Us: 0, cutAtUs: 0, workDir: '/tmp' });
    // One selector per slot, in front of the slot's one scaler.
    expect(filter.match(/streamselect@slot\d=inputs=\d:map=0,fps=30,scale=/g)).toHaveLength(3);
    expect(filter.match(/scale=/g)).toHaveLength(3);
    // Someone joining, or other audio, needs a new run.
    const joined = [...ps, person('d', 4)];
    expect(selectionFor(stage, planOf(speaker, joined, 'a'), videos(joined), audios(joined))).toBeUndefined();
    expect(selectionFor(stage, planOf(speaker, ps, 'b'), videos(ps), audios(ps).slice(1))).toBeUndefined();
  });

  it('a name card that moves with the speaker is not switched in place', async () => {
    const speaker = await loadLayout(resolveLayout('speaker')!);
    const ps = [person('a', 1), person('b', 2), person('n', 3, false)];
    const stage = stageFor(planOf(speaker, ps, 'a'), ps.map((p) => planOf(speaker, ps, p.identity)), videos(ps), audios(ps));
    expect(selectionFor(stage, planOf(speaker, ps, 'b'), videos(ps), audios(ps))).toBeDefined();
    expect(selectionFor(stage, planOf(speaker, ps, 'n'), videos(ps), audios(ps))).toBeUndefined();
  });

  it('grid: one track per tile, and the filter graph has no selector', async () => {
    const grid = await loadLayout(resolveLayout('grid')!);
    const ps = [person('a', 1), person('b', 2), person('c', 3), person('d', 4)];
    const plan = planOf(grid, ps);
    const stage = stageFor(plan, ps.map((p) => planOf(grid, ps, p.identity)), videos(ps), audios(ps));
    expect(stage.slots.every((s) => s.candidates.length === 1)).toBe(true);
    const encoding = { passthroughAllowed: false, width: W, height: H, framerate: 30, videoBitrate: 3000, audioBitrate: 128, audioFrequency: 48000, keyFrameInterval: 4, profile: 'high' as const };
    const { filter } = compositeFilter({ plan, stage, selection: [0, 0, 0, 0], videoSids: videos(ps), audioCount: 4, encoding, audioOnly: false, videoOnly: false, t0Us: 0, cutAtUs: 0, workDir: '/tmp' });
    expect(filter).not.toContain('streamselect');
    expect(filter.match(/overlay=/g)).toHaveLength(4);
  });

  it('reads the first video PTS of an MPEG-TS stream', async () => {
    const ff = launchFfmpeg(
      ['-f', 'lavfi', '-i', 'testsrc=s=160x120:r=30', '-f', 'lavfi', '-i', 'sine', '-t', '1', '-c:v', 'libx264', '-c:a', 'aac', '-output_ts_offset', '12.5', '-f', 'mpegts', '-muxdelay', '0', '-muxpreload', '0', 'pipe:1'],
      { stdout: 'pipe' },
    );
    const chunks: Buffer[] = [];
    ff.stdout!.on('data', (c: Buffer) => chunks.push(c));
    await ff.exited;
    const ts = Buffer.concat(chunks);
    expect(firstPts(ts, 'video')).toBeCloseTo(12.5, 2);
    expect(firstPts(ts, 'audio')).toBeGreaterThan(12);
    expect(firstPts(ts.subarray(0, 188 * 2), 'video')).toBeUndefined();
    expect(firstPts(ts.subarray(1), 'video')).toBeUndefined();
  });
});
