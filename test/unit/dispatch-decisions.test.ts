// The agent dispatcher's decisions (src/agents/server/dispatchDecisions.ts) as pure functions.
import { describe, expect, it } from 'vitest';
import {
  agentJoinRefusal,
  agentsToDispatch,
  endsWithWebhook,
  pickWorker,
  retryDelayMs,
  stillPassedOver,
  type WorkerView,
} from '../../src/agents/server/dispatchDecisions.ts';

const worker = (id: string, over: Partial<WorkerView> = {}): WorkerView => ({ id, agentName: 'echo', capacity: 2, load: 0, busy: 0, full: false, ...over });

describe('pickWorker', () => {
  it('takes the least loaded worker of the agent name, fewer busy slots on a tie, the first registered after that', () => {
    const workers = [worker('a', { load: 0.5 }), worker('b', { load: 0.2, busy: 1 }), worker('c', { load: 0.2 }), worker('d', { load: 0.2 })];
    expect(pickWorker(workers, 'echo', new Set())?.id).toBe('c');
    expect(pickWorker([worker('x', { agentName: 'other' }), ...workers], 'echo', new Set())?.id).toBe('c');
  });

  it('skips workers of another name, passed over, at capacity or full; none left is undefined', () => {
    const workers = [worker('a', { agentName: 'other' }), worker('b', { busy: 2 }), worker('c', { full: true }), worker('d', { load: 0.9 })];
    expect(pickWorker(workers, 'echo', new Set())?.id).toBe('d');
    expect(pickWorker(workers, 'echo', new Map([['d', 123]]))).toBeUndefined();
    expect(pickWorker([], 'echo', new Set())).toBeUndefined();
  });
});

describe('passed-over workers and retries', () => {
  it('keeps backoffs not over, of registered workers', () => {
    const tried = new Map([
      ['over', 1000],
      ['later', 2000],
      ['gone', 3000],
    ]);
    const kept = stillPassedOver(tried, 1000, (id) => id !== 'gone');
    expect([...kept]).toEqual([['later', 2000]]);
    // The caller's map is not changed.
    expect(tried.size).toBe(3);
  });

  it('retries when the first backoff ends, a little after; never with nobody passed over', () => {
    expect(retryDelayMs(new Map([['a', 1500], ['b', 1200]]), 1000)).toBe(210);
    expect(retryDelayMs(new Map([['a', 900]]), 1000)).toBe(10);
    expect(retryDelayMs(new Map(), 1000)).toBeUndefined();
  });
});

describe('agentJoinRefusal', () => {
  const live = { ended: false, room: 'r', identity: 'agent-AJ_1', accepted: true };

  it('lets the accepted job participant into the job room', () => {
    expect(agentJoinRefusal('AJ_1', live, 'r', 'agent-AJ_1')).toBeUndefined();
  });

  it('refuses an unknown or ended job, or another room, with not_found', () => {
    for (const [job, room] of [
      [undefined, 'r'],
      [{ ...live, ended: true }, 'r'],
      [live, 'other'],
      [live, undefined],
    ] as const) {
      const err = agentJoinRefusal('AJ_1', job, room, 'agent-AJ_1');
      expect(err?.code).toBe('not_found');
      expect(err?.message).toContain("agent job 'AJ_1' has ended");
    }
  });

  it('refuses another identity with permission_denied, a job only offered with failed_precondition', () => {
    expect(agentJoinRefusal('AJ_1', live, 'r', 'mallory')?.code).toBe('permission_denied');
    expect(agentJoinRefusal('AJ_1', { ...live, accepted: false }, 'r', 'agent-AJ_1')?.code).toBe('failed_precondition');
  });
});

describe('agentsToDispatch', () => {
  it('asks for each named agent the room lacks, once', () => {
    const a = (agentName: string, metadata = '') => ({ agentName, metadata, attributes: {} });
    expect(agentsToDispatch([a('x', '1'), a(''), a('y'), a('x', '2'), a('z')], ['y']).map((r) => [r.agentName, r.metadata])).toEqual([
      ['x', '1'],
      ['z', ''],
    ]);
  });
});

describe('endsWithWebhook', () => {
  it('sends agent_job_ended for a started job, and for one the worker ended, not for a never-run job the gateway ended', () => {
    expect(endsWithWebhook(true, true)).toBe(true);
    expect(endsWithWebhook(true, false)).toBe(true);
    expect(endsWithWebhook(false, false)).toBe(true);
    expect(endsWithWebhook(false, true)).toBe(false);
  });
});
