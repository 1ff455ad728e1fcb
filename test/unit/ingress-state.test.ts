// LiveKit's ingress state machine (src/ingress/ingressState.ts) as pure transitions.
import { IngressState, IngressState_Status as S, TrackInfo, TrackType } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { bufferingState, ingressStep, mayOverwrite, staleState } from '../../src/ingress/ingressState.ts';

const track = (sid: string) => new TrackInfo({ sid, type: TrackType.VIDEO });

describe('ingress state transitions', () => {
  it('starts BUFFERING with its resource id and start time', () => {
    const s = bufferingState('RT_1', 5n);
    expect(s.status).toBe(S.ENDPOINT_BUFFERING);
    expect([s.resourceId, s.startedAt, s.updatedAt, s.endedAt]).toEqual(['RT_1', 5n, 5n, 0n]);
  });

  it('BUFFERING → PUBLISHING sends ingress_started once; a changed track list updates the state only', () => {
    const first = ingressStep(bufferingState('RT_1', 1n), { kind: 'publishing', tracks: [track('TR_a')] }, 2n)!;
    expect(first.state.status).toBe(S.ENDPOINT_PUBLISHING);
    expect(first.webhook).toBe('ingress_started');
    expect(first.state.tracks.map((t) => t.sid)).toEqual(['TR_a']);
    const again = ingressStep(first.state, { kind: 'publishing', tracks: [track('TR_a'), track('TR_b')] }, 3n)!;
    expect(again.webhook).toBeUndefined();
    expect(again.state.tracks.map((t) => t.sid)).toEqual(['TR_a', 'TR_b']);
  });

  it('does not change the state it was given, nor share tracks with the caller', () => {
    const before = bufferingState('RT_1', 1n);
    const tracks = [track('TR_a')];
    const step = ingressStep(before, { kind: 'publishing', tracks }, 2n)!;
    expect(before.status).toBe(S.ENDPOINT_BUFFERING);
    tracks[0]!.sid = 'changed';
    expect(step.state.tracks[0]!.sid).toBe('TR_a');
  });

  it('records measured input without a webhook', () => {
    const step = ingressStep(bufferingState('RT_1', 1n), { kind: 'input', video: { width: 1280, height: 720 }, audio: { channels: 2 } }, 2n)!;
    expect(step.webhook).toBeUndefined();
    expect([step.state.video?.width, step.state.video?.height, step.state.audio?.channels]).toEqual([1280, 720, 2]);
    expect(step.state.status).toBe(S.ENDPOINT_BUFFERING);
  });

  it('ends INACTIVE, COMPLETE or ERROR (with its message) from BUFFERING or PUBLISHING, with ingress_ended', () => {
    const publishing = ingressStep(bufferingState('RT_1', 1n), { kind: 'publishing', tracks: [] }, 2n)!.state;
    for (const from of [bufferingState('RT_1', 1n), publishing]) {
      for (const status of [S.ENDPOINT_INACTIVE, S.ENDPOINT_COMPLETE] as const) {
        const end = ingressStep(from, { kind: 'end', status }, 9n)!;
        expect([end.state.status, end.state.error, end.state.endedAt, end.webhook]).toEqual([status, '', 9n, 'ingress_ended']);
      }
      const failed = ingressStep(from, { kind: 'end', status: S.ENDPOINT_ERROR, error: 'no video' }, 9n)!;
      expect([failed.state.status, failed.state.error]).toEqual([S.ENDPOINT_ERROR, 'no video']);
    }
  });

  it('an ended state takes no further event', () => {
    const ended = ingressStep(bufferingState('RT_1', 1n), { kind: 'end', status: S.ENDPOINT_ERROR, error: 'x' }, 2n)!.state;
    expect(ingressStep(ended, { kind: 'publishing', tracks: [] }, 3n)).toBeUndefined();
    expect(ingressStep(ended, { kind: 'input', video: { width: 1 } }, 3n)).toBeUndefined();
    expect(ingressStep(ended, { kind: 'end', status: S.ENDPOINT_INACTIVE }, 3n)).toBeUndefined();
  });
});

describe('stored ingress state', () => {
  it('a live state left by a previous run becomes INACTIVE; others are left alone', () => {
    const stale = staleState(new IngressState({ status: S.ENDPOINT_PUBLISHING, resourceId: 'RT_1', startedAt: 1n }), 7n)!;
    expect([stale.status, stale.resourceId, stale.startedAt, stale.endedAt, stale.updatedAt]).toEqual([S.ENDPOINT_INACTIVE, 'RT_1', 1n, 7n, 7n]);
    expect(staleState(new IngressState({ status: S.ENDPOINT_BUFFERING }), 7n)?.status).toBe(S.ENDPOINT_INACTIVE);
    expect(staleState(new IngressState({ status: S.ENDPOINT_ERROR }), 7n)).toBeUndefined();
    expect(staleState(undefined, 7n)).toBeUndefined();
  });

  it('the newest session wins: an older session never overwrites a newer one', () => {
    const newer = new IngressState({ resourceId: 'RT_new', startedAt: 20n });
    const older = new IngressState({ resourceId: 'RT_old', startedAt: 10n });
    expect(mayOverwrite(newer, older)).toBe(false);
    expect(mayOverwrite(older, newer)).toBe(true);
    expect(mayOverwrite(newer, new IngressState({ resourceId: 'RT_new', startedAt: 20n }))).toBe(true);
    expect(mayOverwrite(undefined, older)).toBe(true);
    expect(mayOverwrite(new IngressState(), older)).toBe(true);
  });
});
