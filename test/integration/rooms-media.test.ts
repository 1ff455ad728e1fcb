// Two Node participants in one room exchange real media and data through the gateway.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant, RemoteTrack } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { DataPacket_Kind, RoomServiceClient } from 'livekit-server-sdk';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join, nextEvent } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
const people: NodeParticipant[] = [];

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
});

afterAll(async () => {
  await Promise.all(people.map((p) => p.leave()));
  await gw?.close();
  await redis?.stop();
});

describe('media between participants', () => {
  it('auto-creates the room; the subscriber receives the publisher\'s audio and video RTP', async () => {
    const alice = await join(gw.url, 'media-room', 'alice');
    people.push(alice);
    expect(alice.joined.protocolVersion).toBe(1);
    expect(alice.joined.room.name).toBe('media-room');
    expect(alice.joined.participants).toEqual([]);

    const video = await alice.publishFromFfmpeg({
      kind: 'video',
      source: 'camera',
      input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'],
    });
    const audio = await alice.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });

    const bob = await join(gw.url, 'media-room', 'bob');
    people.push(bob);
    expect(bob.joined.participants.map((p) => p.identity)).toEqual(['alice']);
    const tracks = (bob.joined.participants[0]!.tracks as { sid: string; type?: string; source?: string }[]).map((t) => t.sid).sort();
    expect(tracks).toEqual([video.trackSid, audio.trackSid].sort());

    const received = new Map<string, number>();
    const count = (t: RemoteTrack) => t.track.onReceiveRtp.subscribe(() => received.set(t.kind, (received.get(t.kind) ?? 0) + 1));
    bob.remoteTracks.forEach(count);
    bob.on('trackSubscribed', count);
    await waitFor(() => ((received.get('video') ?? 0) > 30 && (received.get('audio') ?? 0) > 30 ? true : undefined), 15_000, 'RTP at bob');
    const subscribed = bob.remoteTracks.map((t) => [t.participantIdentity, t.kind, t.trackSid]);
    expect(subscribed).toEqual(expect.arrayContaining([['alice', 'video', video.trackSid], ['alice', 'audio', audio.trackSid]]));

    // alice sees bob arrive; bob sees alice's track go away when she unpublishes
    const gone = nextEvent(bob, 'trackUnpublished');
    await video.stop();
    await video.unpublish();
    expect((await gone)[1]).toBe(video.trackSid);
    await audio.stop();
  });

  it('relays data messages with topics and destinations, and RoomService SendData', async () => {
    const a = await join(gw.url, 'data-room', 'a');
    const b = await join(gw.url, 'data-room', 'b');
    const c = await join(gw.url, 'data-room', 'c');
    people.push(a, b, c);
    const atB = nextEvent(b, 'dataReceived');
    const atC = nextEvent(c, 'dataReceived');
    await Promise.all([b.dataReady, c.dataReady]);
    await a.publishData(new TextEncoder().encode('hello all'), { topic: 'chat' });
    const [[mb], [mc]] = await Promise.all([atB, atC]);
    expect(new TextDecoder().decode(mb.payload)).toBe('hello all');
    expect(mb).toMatchObject({ topic: 'chat', from: 'a' });
    expect(mc.from).toBe('a');

    const onlyC = nextEvent(c, 'dataReceived');
    let bGot = 0;
    b.on('dataReceived', () => bGot++);
    await a.publishData(new TextEncoder().encode('psst'), { destinations: ['c'], reliable: false });
    expect(new TextDecoder().decode((await onlyC)[0].payload)).toBe('psst');
    await new Promise((r) => setTimeout(r, 300));
    expect(bGot).toBe(0);

    // SendData through the real SDK reaches participants, without a sender.
    const client = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
    const fromServer = nextEvent(b, 'dataReceived');
    await client.sendData('data-room', new TextEncoder().encode('from the API'), DataPacket_Kind.RELIABLE, {
      topic: 'announce',
      destinationIdentities: ['b'],
    });
    const [m] = await fromServer;
    expect(new TextDecoder().decode(m.payload)).toBe('from the API');
    expect(m.topic).toBe('announce');
    expect(m.from).toBeUndefined();
  });
});
