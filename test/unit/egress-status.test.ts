// The egress status machine (src/egress/status.ts) on its own: every event from every status, and
// the outcome a worker's run ends with.
import { EgressStatus } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { endStatus, isFinal, nextStatus, type FinalStatus, type StatusEvent } from '../../src/egress/status.ts';

const { EGRESS_STARTING: STARTING, EGRESS_ACTIVE: ACTIVE, EGRESS_ENDING: ENDING, EGRESS_COMPLETE: COMPLETE, EGRESS_FAILED: FAILED, EGRESS_ABORTED: ABORTED, EGRESS_LIMIT_REACHED: LIMIT } = EgressStatus;
const FINALS: FinalStatus[] = [COMPLETE, FAILED, ABORTED, LIMIT];
const end = (status: FinalStatus): StatusEvent => ({ type: 'end', status });

describe('nextStatus', () => {
  it('creates a record STARTING, and only on queued', () => {
    expect(nextStatus(undefined, { type: 'queued' })).toBe(STARTING);
    for (const e of [{ type: 'media' }, { type: 'stop' }, { type: 'ending' }, end(COMPLETE)] as StatusEvent[]) expect(nextStatus(undefined, e)).toBeUndefined();
  });

  it('does not start an existing record again', () => {
    for (const s of [STARTING, ACTIVE, ENDING, ...FINALS]) expect(nextStatus(s, { type: 'queued' })).toBeUndefined();
  });

  it('goes ACTIVE on the first media, and stays ENDING when a stop came first', () => {
    expect(nextStatus(STARTING, { type: 'media' })).toBe(ACTIVE);
    expect(nextStatus(ACTIVE, { type: 'media' })).toBe(ACTIVE);
    expect(nextStatus(ENDING, { type: 'media' })).toBe(ENDING);
  });

  it('goes ENDING on a stop or a teardown from any live status', () => {
    for (const s of [STARTING, ACTIVE, ENDING]) {
      expect(nextStatus(s, { type: 'stop' })).toBe(ENDING);
      expect(nextStatus(s, { type: 'ending' })).toBe(ENDING);
    }
  });

  it('ends with the outcome given, from any live status', () => {
    for (const s of [STARTING, ACTIVE, ENDING]) for (const f of FINALS) expect(nextStatus(s, end(f))).toBe(f);
  });

  it('never moves a final status', () => {
    for (const s of FINALS) {
      expect(isFinal(s)).toBe(true);
      for (const e of [{ type: 'media' }, { type: 'stop' }, { type: 'ending' }, ...FINALS.map(end)] as StatusEvent[]) expect(nextStatus(s, e)).toBeUndefined();
    }
    for (const s of [STARTING, ACTIVE, ENDING]) expect(isFinal(s)).toBe(false);
  });
});

describe('endStatus', () => {
  it('fails a failed run whatever stopped it', () => {
    for (const stopReason of [undefined, 'stop', 'limit', 'shutdown', 'drain'] as const) {
      expect(endStatus({ failed: true, stopReason, recorded: true })).toBe(FAILED);
      expect(endStatus({ failed: true, stopReason, recorded: false })).toBe(FAILED);
    }
  });

  it('reports the limit, and a cut-short worker as failed, recorded or not', () => {
    for (const recorded of [true, false]) {
      expect(endStatus({ failed: false, stopReason: 'limit', recorded })).toBe(LIMIT);
      expect(endStatus({ failed: false, stopReason: 'shutdown', recorded })).toBe(FAILED);
    }
  });

  it('aborts what recorded nothing, and completes what did', () => {
    for (const stopReason of [undefined, 'stop', 'drain'] as const) {
      expect(endStatus({ failed: false, stopReason, recorded: false })).toBe(ABORTED);
      expect(endStatus({ failed: false, stopReason, recorded: true })).toBe(COMPLETE);
    }
  });
});
