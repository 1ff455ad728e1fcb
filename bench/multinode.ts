// `npm run bench -- multinode`: two gateway processes (127.0.0.2 and 127.0.0.3) in a cluster on one
// Redis. RoomService call latency on the room's own node against a node that forwards the call over
// Redis pub/sub, the calls interleaved so both see the same machine load; then what a node's death
// costs: SIGKILL of the node hosting a room, and the time until the room is finished and until a
// participant can join that room name again through the surviving node.
import { performance } from 'node:perf_hooks';
import { RoomServiceClient } from 'livekit-server-sdk';
import { API_KEY, API_SECRET } from '../test/helpers/gateway.ts';
import { join } from '../test/helpers/participants.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { spawnGateway, type SpawnedGateway } from '../test/helpers/spawnGateway.ts';
import type { Recorder } from './gateway.ts';

const CALLS = Number(process.env.ROOMGATE_BENCH_MULTINODE_CALLS ?? 500);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runMultinode(record: Recorder): Promise<void> {
  const redis = await startRedis();
  const nodes: SpawnedGateway[] = [];
  try {
    for (const [id, ip] of [['A', '127.0.0.2'], ['B', '127.0.0.3']] as const) {
      nodes.push(
        await spawnGateway({
          ROOMGATE_BIND: ip,
          ROOMGATE_NODE_ID: id,
          ROOMGATE_REDIS_URL: redis.url,
          ROOMGATE_CLUSTER_ENABLED: 'true',
          ROOMGATE_EGRESS_WORKER: 'false',
          ROOMGATE_RTMP_ENABLED: 'false',
        }),
      );
    }
    const [a, b] = nodes as [SpawnedGateway, SpawnedGateway];
    const owner = new RoomServiceClient(a.url, API_KEY, API_SECRET);
    const other = new RoomServiceClient(b.url, API_KEY, API_SECRET);
    await owner.createRoom({ name: 'bench' });
    const p = await join(a.url, 'bench', 'someone');

    const times = { owner: [] as number[], other: [] as number[] };
    for (let i = 0; i < CALLS + 20; i++) {
      for (const [side, client] of [['owner', owner], ['other', other]] as const) {
        const t = performance.now();
        await client.listParticipants('bench');
        if (i >= 20) times[side].push(performance.now() - t); // the first calls warm the connections
      }
    }
    for (const side of ['owner', 'other'] as const) {
      const sorted = times[side].sort((x, y) => x - y);
      const label = side === 'owner' ? 'on the owner node' : 'on a non-owner (forwarded over Redis)';
      record(`ListParticipants p50 ${label}`, pct(sorted, 50), 'ms', `${CALLS} calls, sequential, interleaved`);
      record(`ListParticipants p95 ${label}`, pct(sorted, 95), 'ms');
    }
    await p.leave();

    // Node death: a room placed on B (A has a room already, so B is the least loaded), B killed.
    await other.createRoom({ name: 'doomed' });
    const killed = performance.now();
    process.kill(b.pid, 'SIGKILL');
    let finishedMs = 0;
    let rejoinedMs = 0;
    for (;;) {
      const elapsed = performance.now() - killed;
      if (elapsed > 60_000) throw new Error('the dead node\'s room was not finished within 60 s');
      if (!finishedMs && !(await owner.listRooms(['doomed'])).length) finishedMs = elapsed;
      if (finishedMs) {
        try {
          const back = await join(a.url, 'doomed', 'returning');
          rejoinedMs = performance.now() - killed;
          await back.leave();
          break;
        } catch {
          // refused while the room is still recorded on the dead node
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    record('node SIGKILL → its room finished (room_finished sent)', finishedMs / 1000, 's', 'heartbeat 1 s, TTL 3 s');
    record('node SIGKILL → a participant rejoins that room on a live node', rejoinedMs / 1000, 's', 'polling every 50 ms');
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis.stop();
  }
}
