// Several gateway nodes sharing one Redis (issue 16, part 2): three real `roomgate start` processes,
// each bound to its own loopback address (A 127.0.0.2, B 127.0.0.3, C 127.0.0.4) with one real
// redis-server. A room created through A lives on A; participants whose signaling lands on B and C
// are piped to A and see and hear each other, their media going straight to A's address; RoomService
// on C lists and mutes A's participants; an owner that is gone answers `unavailable`; an egress
// worker attached to B restreams a participant of A's room, its taps pulled from A. SIGKILL of B:
// the room on A keeps running, B's room is finished (one room_finished webhook) and a new room goes
// to a live node.
import { Room as LkRoom, TrackKind, VideoStream } from '@livekit/rtc-node';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { EgressClient, EgressStatus, IngressClient, IngressInput, RoomServiceClient, StreamOutput, TrackSource, WebhookReceiver } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { NodeParticipant } from '../../src/client/node.ts';
import { SignalClient } from '../../src/client/SignalClient.ts';
import { loadConfig } from '../../src/config.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import { startEgressWorker } from '../../src/egress/worker/startWorker.ts';
import { startRtmpSink, type RtmpSink } from '../helpers/egress.ts';
import { twirpError } from '../helpers/errors.ts';
import { API_KEY, API_SECRET } from '../helpers/gateway.ts';
import { scaled } from '../helpers/deadline.ts';
import { waitFor } from '../helpers/net.ts';
import { join, joinToken, nextEvent } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { spawnGateway, type SpawnedGateway } from '../helpers/spawnGateway.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

const NODES = { A: '127.0.0.2', B: '127.0.0.3', C: '127.0.0.4' } as const;
type NodeName = keyof typeof NODES;

let redis: TestRedis;
let probe: Redis;
let sink: WebhookSink;
const gw = {} as Record<NodeName, SpawnedGateway>;
const people: NodeParticipant[] = [];
const lkRooms: LkRoom[] = [];
let worker: EgressWorker | undefined;
let sinkRtmp: RtmpSink;
const api = (n: NodeName) => new RoomServiceClient(gw[n].url, API_KEY, API_SECRET);
const receiver = new WebhookReceiver(API_KEY, API_SECRET);

/** The node a room is placed on, as recorded in Redis. */
async function placement(room: string): Promise<string | undefined> {
  const json = await probe.hget('roomgate:rooms', room);
  return json ? (JSON.parse(json) as { node: string }).node : undefined;
}

/** `p`, or a failure naming `what` once the (load-scaled) deadline has passed. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), scaled(ms))));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function webhookEvents(): Promise<{ event: string; room?: { name: string } }[]> {
  return Promise.all(sink.received.map((r) => receiver.receive(r.body, r.auth)));
}

beforeAll(async () => {
  redis = await startRedis();
  probe = new Redis(redis.url);
  sink = await startWebhookSink();
  const started = await Promise.all(
    (Object.keys(NODES) as NodeName[]).map((n) =>
      spawnGateway({
        ROOMGATE_BIND: NODES[n],
        ROOMGATE_NODE_ID: n,
        ROOMGATE_REDIS_URL: redis.url,
        ROOMGATE_CLUSTER_ENABLED: 'true',
        ROOMGATE_WEBHOOK_URLS: sink.url,
        ROOMGATE_EGRESS_WORKER: 'false',
        ROOMGATE_RTMP_ENABLED: 'false',
        ROOMGATE_CONSOLE_ENABLED: 'false',
      }).then((g) => [n, g] as const),
    ),
  );
  for (const [n, g] of started) gw[n] = g;
  // Each node registers as it starts listening; all three are members with a live heartbeat.
  await waitFor(async () => ((await probe.smembers('roomgate:cluster:nodes')).sort().join() === 'A,B,C' ? true : undefined), 10_000, 'three nodes registered');
}, 120_000);

afterAll(async () => {
  await worker?.close();
  await sinkRtmp?.stop();
  // No dispose() of rtc-node: its FFI runtime belongs to the process the next file runs in (see rtc-node.test.ts).
  await Promise.all(lkRooms.map((r) => r.disconnect().catch(() => undefined)));
  await Promise.all(people.map((p) => Promise.race([p.leave().catch(() => undefined), new Promise((r) => setTimeout(r, 3000))])));
  await Promise.all(Object.values(gw).map((g) => g.stop()));
  probe?.disconnect();
  await sink?.close();
  await redis?.stop();
});

describe('several gateway nodes sharing one Redis', () => {
  let aliceVideo = '';

  it('places a room created through A on A; participants signaling through B and C see each other and get media', async () => {
    const created = await api('A').createRoom({ name: 'main', metadata: 'on A' });
    expect(created.name).toBe('main');
    expect(await placement('main')).toBe('A');

    const alice = await join(gw.B.url, 'main', 'alice');
    people.push(alice);
    expect(alice.joined.room.name).toBe('main');
    const video = await alice.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'] });
    aliceVideo = video.trackSid;
    const bobArrives = nextEvent(alice, 'participantConnected', (p) => (p as { identity?: string }).identity === 'bob', 15_000);
    const bob = await join(gw.C.url, 'main', 'bob');
    people.push(bob);
    expect(bob.joined.participants.map((p) => p.identity)).toEqual(['alice']);
    await bobArrives;

    // The media goes to the owner's address, not through the node the socket landed on.
    const remote = await waitFor(() => bob.remoteTracks.find((t) => t.trackSid === aliceVideo), 15_000, 'bob subscribed to alice');
    let packets = 0;
    remote.track.onReceiveRtp.subscribe(() => packets++);
    await waitFor(() => (packets > 30 ? true : undefined), 15_000, 'alice\'s video RTP at bob');
    // A transport asked for through C carries A's address in its ICE candidates.
    const { client } = await SignalClient.connect(gw.C.url, await joinToken('main', 'looker', { hidden: true }), (u) => new WebSocket(u) as never);
    const transport = (await client.request('createTransport', { direction: 'recv' })) as { iceCandidates: { ip: string }[] };
    expect(transport.iceCandidates.map((c) => c.ip)).toEqual(expect.arrayContaining([NODES.A]));
    expect(transport.iceCandidates.every((c) => c.ip === NODES.A)).toBe(true);
    // Removed through B (forwarded to A): the socket it came on closes.
    const closed = new Promise<void>((resolve) => client.onClose(() => resolve()));
    await api('B').removeParticipant('main', 'looker');
    await closed;

    // A stock LiveKit client (rtc-node) whose socket lands on B joins the same room and decodes alice's video.
    const lk = new LkRoom();
    lkRooms.push(lk);
    await lk.connect(gw.B.url.replace('http', 'ws'), await joinToken('main', 'lk'), { autoSubscribe: true, dynacast: false });
    expect([...lk.remoteParticipants.values()].map((p) => p.identity).sort()).toEqual(['alice', 'bob']);
    const lkVideo = await waitFor(
      () => [...(lk.remoteParticipants.get('alice')?.trackPublications.values() ?? [])].find((t) => t.track?.kind === TrackKind.KIND_VIDEO)?.track,
      15_000,
      'the LiveKit client subscribed to alice\'s video',
    );
    const reader = new VideoStream(lkVideo).getReader();
    const frame = await reader.read();
    await reader.cancel();
    expect(frame.value!.frame.width).toBe(320);
    await lk.disconnect();

    // Both sockets were piped to A: A's room has both of them, and B and C host no room.
    const onA = await waitFor(async () => {
      const list = await api('A').listParticipants('main');
      return list.length === 2 ? list : undefined;
    }, 10_000, 'the LiveKit client gone');
    expect(onA.map((p) => p.identity).sort()).toEqual(['alice', 'bob']);
    expect(gw.B.logs()).toContain('signaling proxied');
    expect(gw.C.logs()).toContain('signaling proxied');
  });

  it('answers RoomService for A\'s room on C: lists, mutes, lists every node\'s rooms', async () => {
    const onC = await api('C').listParticipants('main');
    expect(onC.map((p) => p.identity).sort()).toEqual(['alice', 'bob']);
    const alice = onC.find((p) => p.identity === 'alice')!;
    expect(alice.tracks.map((t) => [t.sid, t.source])).toEqual([[aliceVideo, TrackSource.CAMERA]]);

    const bob = people[1]!;
    const heard = nextEvent(bob, 'trackMuted', (_who, sid, muted) => sid === aliceVideo && muted);
    const muted = await api('C').mutePublishedTrack('main', 'alice', aliceVideo, true);
    expect(muted.muted).toBe(true);
    await heard;
    expect((await api('A').getParticipant('main', 'alice')).tracks[0]!.muted).toBe(true);
    const unmuted = nextEvent(bob, 'trackMuted', (_who, sid, m) => sid === aliceVideo && !m);
    await api('B').mutePublishedTrack('main', 'alice', aliceVideo, false);
    await unmuted;

    // The owner's own errors come back as they are.
    expect(await twirpError(api('C').getParticipant('main', 'nobody'))).toMatchObject({ code: 'not_found' });
    // ListRooms on any node lists every node's rooms, with the owner's live figures.
    await api('B').createRoom({ name: 'side' });
    const rooms = await api('C').listRooms();
    expect(rooms.map((r) => r.name)).toEqual(['main', 'side']);
    expect(rooms[0]!.numParticipants).toBe(2);
    await api('C').updateRoomMetadata('main', 'set on C');
    expect((await api('A').listRooms(['main']))[0]!.metadata).toBe('set on C');

    // An ingress written through one node is known to the others (their in-memory stream-key index).
    const ingressOn = (n: NodeName) => new IngressClient(gw[n].url, API_KEY, API_SECRET);
    const ingress = await ingressOn('C').createIngress(IngressInput.WHIP_INPUT, { roomName: 'main', participantIdentity: 'cam' });
    await waitFor(async () => ((await ingressOn('A').listIngress({ ingressId: ingress.ingressId })).length === 1 ? true : undefined), 10_000, 'the ingress listed on A');
    await ingressOn('B').deleteIngress(ingress.ingressId);
    await waitFor(async () => ((await ingressOn('C').listIngress({ roomName: 'main' })).length === 0 ? true : undefined), 10_000, 'the ingress gone on C');

    // A room whose node is not running: `unavailable`, saying so.
    await probe.hset('roomgate:rooms', 'ghost', JSON.stringify({ node: 'Z', room: { name: 'ghost', sid: 'RM_ghost' } }));
    const gone = await twirpError(api('C').listParticipants('ghost'));
    expect(gone.code).toBe('unavailable');
    expect(gone.message).toMatch(/node Z.*not running/);
    await probe.hdel('roomgate:rooms', 'ghost');
  });

  it('an egress worker attached to B records a participant of A\'s room, pulling the taps from A', async () => {
    worker = await startEgressWorker(
      loadConfig({
        env: {
          ROOMGATE_REDIS_URL: redis.url,
          ROOMGATE_EGRESS_GATEWAY_URL: gw.B.url,
          ROOMGATE_API_KEY: API_KEY,
          ROOMGATE_API_SECRET: API_SECRET,
          ROOMGATE_RTMP_ENABLED: 'false',
          ROOMGATE_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-mn-egress-')),
          ROOMGATE_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
          ROOMGATE_EGRESS_PROGRESS_INTERVAL: '0',
        },
      }),
    );
    sinkRtmp = await startRtmpSink('mn');
    const egress = new EgressClient(gw.C.url, API_KEY, API_SECRET);
    const started = await egress.startParticipantEgress('main', 'alice', { stream: new StreamOutput({ urls: [sinkRtmp.url] }) });
    await waitFor(() => (sinkRtmp.size() > 30_000 ? true : undefined), 30_000, 'the RTMP sink to receive alice\'s video');
    expect(worker.runningJobs).toEqual([started.egressId]);
    await egress.stopEgress(started.egressId);
    await waitFor(async () => ((await egress.listEgress({ egressId: started.egressId }))[0]?.status === EgressStatus.EGRESS_COMPLETE ? true : undefined), 30_000, 'egress COMPLETE');
    await worker.close();
  });

  it('SIGKILL of B: the room on A keeps running, B\'s room is finished once, new rooms go to a live node', async () => {
    expect(await placement('side')).toBe('B');
    process.kill(gw.B.pid, 'SIGKILL');

    // B's room is finished by a survivor: gone from every listing, one room_finished.
    await waitFor(async () => ((await api('A').listRooms()).some((r) => r.name === 'side') ? undefined : true), 15_000, 'B\'s room finished');
    await waitFor(async () => ((await webhookEvents()).some((e) => e.event === 'room_finished' && e.room?.name === 'side') ? true : undefined), 10_000, 'room_finished for side');
    expect(await probe.sismember('roomgate:cluster:nodes', 'B')).toBe(0);

    // The room on A runs on: a newcomer through C joins it, publishes, and bob receives its media.
    // (Media rather than data: bob's roomgate-SDK data channel, opened through C in the first test,
    // failed to open in 2 of 6 runs here; that is an open question in the README, not this test's.)
    const bob = people[1]!;
    const carol = await within(join(gw.C.url, 'main', 'carol'), 15_000, 'carol to join through C');
    people.push(carol);
    expect(carol.joined.participants.map((p) => p.identity)).toContain('bob');
    const carolVideo = await carol.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'] });
    const fromCarol = await waitFor(() => bob.remoteTracks.find((t) => t.trackSid === carolVideo.trackSid), 15_000, 'bob subscribed to carol');
    let packets = 0;
    fromCarol.track.onReceiveRtp.subscribe(() => packets++);
    await waitFor(() => (packets > 30 ? true : undefined), 15_000, 'carol\'s video RTP at bob');

    // New rooms go to a live node, however they are created.
    await api('C').createRoom({ name: 'after' });
    expect(['A', 'C']).toContain(await placement('after'));
    const dave = await within(join(gw.A.url, 'fresh', 'dave'), 15_000, 'dave to join a new room through A');
    people.push(dave);
    expect(['A', 'C']).toContain(await placement('fresh'));

    const finished = (await webhookEvents()).filter((e) => e.event === 'room_finished' && e.room?.name === 'side');
    expect(finished).toHaveLength(1);
  });
});
