// A stock @livekit/agents worker (test/fixtures/lk-agent) SIGKILLed with its job process while its
// agent talks in a room: the gateway notices the dead socket, offers the job to the other worker of
// the same agent name, whose agent replaces the dead one under the same identity and answers again;
// the job stays running throughout, and deleting the room then ends it. The agent tests without
// faults are in test/e2e/lk-agents.test.ts.
import { JobStatus } from '@livekit/protocol';
import { TrackKind, TrackSource, type Room } from '@livekit/rtc-node';
import { AgentDispatchClient } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { scaled } from '../helpers/deadline.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { agentIn, startStockWorkers, type StockWorker } from '../helpers/lkAgents.ts';
import { waitFor } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { connectRtcNode, speakTone } from '../helpers/rtcNode.ts';

let redis: TestRedis;
let gw: Gateway;
let pool: [StockWorker, StockWorker];
const rooms: Room[] = [];
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  // Two workers of one agent name, started together (each takes seconds to load the framework).
  pool = (await startStockWorkers(gw.url, 'tone-echo', 2)) as [StockWorker, StockWorker];
});

afterAll(async () => {
  for (const stop of stops) await stop();
  await Promise.all(rooms.map((r) => r.disconnect()));
  await Promise.all((pool ?? []).map((w) => w.kill()));
  // No dispose(): see test/e2e/rtc-node.test.ts.
  await gw?.close();
  await redis?.stop();
});

describe('a stock agent worker killed mid-job', () => {
  it('a killed worker\'s job goes to another worker, and the room keeps its agent', async () => {
    const user = await connectRtcNode(gw.url, 'agent-failover', 'user2');
    rooms.push(user);
    stops.push(await speakTone(user));
    const [a, b] = pool;
    const dispatch = new AgentDispatchClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
    const d = await dispatch.createDispatch('agent-failover', 'tone-echo');
    const first = await agentIn(user, 'speaking');
    const job = await waitFor(async () => (await dispatch.getDispatch(d.id, 'agent-failover'))?.state?.jobs[0], 10_000, 'the job');
    const running = job.state!.workerId;
    expect([a.id, b.id]).toContain(running);

    // SIGKILL the worker and its job process: no goodbye on either socket.
    await (running === a.id ? a : b).kill();
    const other = running === a.id ? b.id : a.id;
    const moved = await waitFor(
      async () => {
        const j = (await dispatch.getDispatch(d.id, 'agent-failover'))?.state?.jobs[0];
        return j?.state?.workerId === other && j.state.status === JobStatus.JS_RUNNING ? j : undefined;
      },
      30_000,
      'the job running on the other worker',
    );
    expect(moved.id).toBe(job.id);
    // The new attempt's agent (same identity, a new participant) answers again: it heard the tone
    // and published its answer (the answer's sound is measured in the first test).
    const second = await waitFor(
      () => {
        const p = user.remoteParticipants.get(first.identity);
        return p && p.sid !== first.sid && p.attributes['lk.agent.state'] === 'speaking' ? p : undefined;
      },
      45_000,
      'the next attempt\'s agent speaking',
    );
    const published = await waitFor(
      () => [...(user.remoteParticipants.get(second.identity)?.trackPublications.values() ?? [])].find((t) => t.kind === TrackKind.KIND_AUDIO),
      20_000,
      'the next attempt\'s answer track',
    );
    expect(published.source).toBe(TrackSource.SOURCE_MICROPHONE);
    // The dead attempt's agent, replaced by the new one, did not end the job.
    expect((await dispatch.getDispatch(d.id, 'agent-failover'))?.state?.jobs[0]?.state?.status).toBe(JobStatus.JS_RUNNING);

    // Deleting the room ends its running job: the dispatch goes with it and the agent is disconnected.
    await gw.rooms.deleteRoom('agent-failover');
    expect(await dispatch.listDispatch('agent-failover')).toEqual([]);
    await waitFor(() => user.remoteParticipants.size === 0 || !user.isConnected || undefined, scaled(20_000), 'the room emptied');
  }, 90_000);
});
