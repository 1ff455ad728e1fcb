// Stock @livekit/rtc-node 0.13.35 (LiveKit's Rust SDK through its FFI binary, as @livekit/agents
// uses it) against a real gateway on loopback: two rtc-node participants publish a sine from an
// AudioSource and frames from a VideoSource and read each other's through AudioStream/VideoStream,
// exchange data with a topic, an RPC and attributes; an rtc-node participant and a roomgate-SDK
// participant receive each other's media, and an rtc-node participant and stock livekit-client
// 2.23.0 in headless Chromium exchange audio, video, data and RPCs both ways.
import {
  AudioStream,
  DataPacketKind,
  LocalVideoTrack,
  Room,
  RoomEvent,
  SimulateScenarioKind,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  VideoBufferType,
  VideoFrame,
  VideoSource,
  VideoStream,
  type RemoteParticipant,
  type RemoteTrack,
} from '@livekit/rtc-node';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant, RemoteTrack as SdkRemoteTrack } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join, joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { connectRtcNode, speakTone } from '../helpers/rtcNode.ts';

let redis: TestRedis;
let gw: Gateway;
let browser: Browser | undefined;
const rooms: Room[] = [];
const nodes: NodeParticipant[] = [];
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
});

afterAll(async () => {
  for (const stop of stops) await stop();
  await Promise.all(rooms.map((r) => r.disconnect()));
  await Promise.all(nodes.map((n) => n.leave().catch(() => undefined)));
  await browser?.close();
  // No dispose(): the FFI's runtime belongs to the process, and the suite's one fork (isolate: false)
  // runs the next rtc-node file with this module, whose client cannot start again once disposed.
  await gw?.close();
  await redis?.stop();
});

async function connect(room: string, identity: string, grant: Record<string, boolean> = {}): Promise<Room> {
  const r = await connectRtcNode(gw.url, room, identity, grant);
  rooms.push(r);
  return r;
}

const SAMPLE_RATE = 48_000;
const TONE_HZ = 440;

/** A 440 Hz sine as a microphone track, stopped after the file. */
async function publishSine(room: Room): Promise<void> {
  stops.push(await speakTone(room, { hz: TONE_HZ, amplitude: 10_000 }));
}

/** A 320×240 camera track whose colour cycles, 15 frames a second. */
async function publishFrames(room: Room): Promise<void> {
  const W = 320;
  const H = 240;
  const source = new VideoSource(W, H);
  const track = LocalVideoTrack.createVideoTrack('frames', source);
  await room.localParticipant!.publishTrack(track, new TrackPublishOptions({ source: TrackSource.SOURCE_CAMERA, simulcast: false }));
  let i = 0;
  const timer = setInterval(() => {
    const rgba = new Uint8Array(W * H * 4);
    const shade = (i++ * 8) % 256;
    for (let p = 0; p < W * H; p++) rgba.set([shade, 255 - shade, 128, 255], p * 4);
    source.captureFrame(new VideoFrame(rgba, W, H, VideoBufferType.RGBA));
  }, 66);
  stops.push(async () => {
    clearInterval(timer);
    await source.close();
  });
}

/** The first remote track of `kind` from `identity`, as it is subscribed. */
function subscribed(room: Room, identity: string, kind: TrackKind): Promise<RemoteTrack> {
  const have = room.remoteParticipants.get(identity);
  for (const pub of have?.trackPublications.values() ?? []) {
    if (pub.kind === kind && pub.track) return Promise.resolve(pub.track);
  }
  return new Promise((resolve) => {
    const on = (track: RemoteTrack, _pub: unknown, p: RemoteParticipant) => {
      if (p.identity !== identity || track.kind !== kind) return;
      room.off(RoomEvent.TrackSubscribed, on);
      resolve(track);
    };
    room.on(RoomEvent.TrackSubscribed, on);
  });
}

/**
 * Reads about a second of audio after the first loud frame: its level, and its pitch from the
 * zero crossings (a 440 Hz sine crosses zero 880 times a second; Opus keeps that).
 */
async function hearTone(track: RemoteTrack): Promise<{ rms: number; hz: number }> {
  const stream = new AudioStream(track, SAMPLE_RATE, 1);
  const reader = stream.getReader();
  let samples = 0;
  let crossings = 0;
  let sumSq = 0;
  let prev = 0;
  try {
    for (;;) {
      const { value: frame, done } = await reader.read();
      if (done) throw new Error('audio stream ended before a second of sound');
      const d = frame.data;
      if (samples === 0 && !d.some((s) => Math.abs(s) > 1000)) continue; // silence before the tone arrives
      for (const s of d) {
        if ((prev < 0 && s >= 0) || (prev >= 0 && s < 0)) crossings++;
        prev = s;
        sumSq += s * s;
      }
      samples += d.length;
      if (samples >= SAMPLE_RATE) break;
    }
  } finally {
    await reader.cancel();
  }
  return { rms: Math.sqrt(sumSq / samples), hz: (crossings / 2) * (SAMPLE_RATE / samples) };
}

/** Reads video frames until `count` have arrived; returns their sizes. */
async function seeFrames(track: RemoteTrack, count: number): Promise<{ width: number; height: number }[]> {
  const reader = new VideoStream(track).getReader();
  const sizes: { width: number; height: number }[] = [];
  try {
    while (sizes.length < count) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`video stream ended after ${sizes.length} frames`);
      sizes.push({ width: value.frame.width, height: value.frame.height });
    }
  } finally {
    await reader.cancel();
  }
  return sizes;
}

describe('stock @livekit/rtc-node participants', () => {
  it('two rtc-node participants hear, see, message and call each other', async () => {
    const alice = await connect('rs-room', 'alice', { canUpdateOwnMetadata: true });
    const bob = await connect('rs-room', 'bob');
    expect(alice.isConnected && bob.isConnected).toBe(true);
    await waitFor(() => alice.remoteParticipants.has('bob') || undefined, 10_000, 'bob at alice');
    await publishSine(alice);
    await publishFrames(alice);

    const [audio, video] = await Promise.all([subscribed(bob, 'alice', TrackKind.KIND_AUDIO), subscribed(bob, 'alice', TrackKind.KIND_VIDEO)]);
    const [tone, frames] = await Promise.all([hearTone(audio), seeFrames(video, 20)]);
    expect(tone.rms).toBeGreaterThan(1000);
    expect(tone.hz).toBeGreaterThan(TONE_HZ * 0.9);
    expect(tone.hz).toBeLessThan(TONE_HZ * 1.1);
    expect(frames.at(-1)).toEqual({ width: 320, height: 240 });

    // The gateway lists both tracks under alice, as LiveKit's RoomService does.
    const listed = (await gw.rooms.listParticipants('rs-room')).find((p) => p.identity === 'alice')!;
    expect(listed.tracks.map((t) => t.mimeType).sort()).toEqual(['audio/opus', 'video/VP8']);

    // Data with a topic, to one destination.
    const got = new Promise<{ text: string; from?: string; topic?: string; kind?: DataPacketKind }>((resolve) => {
      bob.on(RoomEvent.DataReceived, (payload, p, kind, topic) => resolve({ text: new TextDecoder().decode(payload), from: p?.identity, topic, kind }));
    });
    await alice.localParticipant!.publishData(new TextEncoder().encode('hello bob'), { reliable: true, topic: 'greetings', destination_identities: ['bob'] });
    expect(await got).toEqual({ text: 'hello bob', from: 'alice', topic: 'greetings', kind: DataPacketKind.KIND_RELIABLE });

    // An RPC round trip: request, ack and response are DataPackets relayed by identity.
    bob.localParticipant!.registerRpcMethod('greet', async (d) => `hi ${d.payload} from bob, called by ${d.callerIdentity}`);
    expect(await alice.localParticipant!.performRpc({ destinationIdentity: 'bob', method: 'greet', payload: 'alice' })).toBe('hi alice from bob, called by alice');

    // Attributes: alice's update reaches bob and the server's listing.
    const changed = new Promise<Record<string, string>>((resolve) => {
      bob.on(RoomEvent.ParticipantAttributesChanged, (attrs, p) => {
        if (p.identity === 'alice') resolve(attrs);
      });
    });
    await alice.localParticipant!.setAttributes({ mood: 'curious' });
    expect(await changed).toEqual({ mood: 'curious' });
    expect((await gw.rooms.listParticipants('rs-room')).find((p) => p.identity === 'alice')?.attributes).toEqual({ mood: 'curious' });

    // Bob's signaling WebSocket drops (the SDK's signal-reconnect scenario): he resumes the same
    // session (reconnect=1, same sid; the server offers his subscriber PeerConnection again with an
    // ICE restart) and still hears alice's tone.
    const bobSid = (await gw.rooms.listParticipants('rs-room')).find((p) => p.identity === 'bob')!.sid;
    const resumed = new Promise<void>((resolve) => bob.once(RoomEvent.Reconnected, () => resolve()));
    await bob.simulateScenario(SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT);
    await resumed;
    expect((await gw.rooms.listParticipants('rs-room')).find((p) => p.identity === 'bob')?.sid).toBe(bobSid);
    const again = await hearTone(audio);
    expect(again.hz).toBeGreaterThan(TONE_HZ * 0.9);
    expect(again.hz).toBeLessThan(TONE_HZ * 1.1);

    // Leaving is seen by the other side.
    const left = new Promise<string>((resolve) => alice.on(RoomEvent.ParticipantDisconnected, (p) => resolve(p.identity)));
    await bob.disconnect();
    expect(await left).toBe('bob');
  }, 60_000);

  it('an rtc-node participant and a roomgate-SDK participant receive each other\'s media', async () => {
    const node = await join(gw.url, 'mixed-rs', 'node');
    nodes.push(node);
    await node.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'] });
    await node.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', `sine=frequency=${TONE_HZ}:sample_rate=48000`] });
    const rtp = new Map<string, number>();
    node.on('trackSubscribed', (t: SdkRemoteTrack) => {
      if (t.participantIdentity === 'carol') t.track.onReceiveRtp.subscribe(() => rtp.set(t.kind, (rtp.get(t.kind) ?? 0) + 1));
    });

    const carol = await connect('mixed-rs', 'carol');
    await publishSine(carol);
    await publishFrames(carol);
    const [audio, video] = await Promise.all([subscribed(carol, 'node', TrackKind.KIND_AUDIO), subscribed(carol, 'node', TrackKind.KIND_VIDEO)]);
    const [tone, frames] = await Promise.all([hearTone(audio), seeFrames(video, 20)]);
    expect(tone.hz).toBeGreaterThan(TONE_HZ * 0.9);
    expect(tone.hz).toBeLessThan(TONE_HZ * 1.1);
    expect(frames.at(-1)).toEqual({ width: 320, height: 240 });
    await waitFor(() => ((rtp.get('video') ?? 0) > 30 && (rtp.get('audio') ?? 0) > 30 ? true : undefined), 20_000, 'carol\'s RTP at the roomgate-SDK participant');

    // Data both ways between the two SDKs.
    const fromNode = new Promise<string>((resolve) => carol.on(RoomEvent.DataReceived, (payload, _p, _k, topic) => topic === 'chat' && resolve(new TextDecoder().decode(payload))));
    await node.publishData(new TextEncoder().encode('hi carol'), { topic: 'chat' });
    expect(await fromNode).toBe('hi carol');

    // The SDK's full reconnect: it leaves and joins again as a new participant, republishing both tracks.
    const oldSid = (await gw.rooms.listParticipants('mixed-rs')).find((p) => p.identity === 'carol')!.sid;
    const back = new Promise<void>((resolve) => carol.once(RoomEvent.Reconnected, () => resolve()));
    await carol.simulateScenario(SimulateScenarioKind.SIMULATE_FULL_RECONNECT);
    await back;
    const again = await waitFor(
      async () => {
        const c = (await gw.rooms.listParticipants('mixed-rs')).find((p) => p.identity === 'carol');
        return c && c.sid !== oldSid && c.tracks.length === 2 ? c : undefined;
      },
      15_000,
      'carol rejoined with her tracks',
    );
    expect(again.tracks.map((t) => t.mimeType).sort()).toEqual(['audio/opus', 'video/VP8']);
  }, 60_000);

  it('an rtc-node participant and livekit-client in Chromium exchange media, data and RPCs', async () => {
    const rs = await connect('lk-rs', 'rs');
    await publishSine(rs);
    await publishFrames(rs);

    browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
    const page = await (await browser.newContext()).newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${gw.url}/lk?room=lk-rs&identity=page&autojoin=1&token=${await joinToken('lk-rs', 'page')}`);
    await waitFor(async () => pageErrors.length > 0 || (await page.evaluate(() => (window as unknown as { lk?: Lk }).lk?.events.some((e) => e.name === 'published' || e.name === 'error'))), 45_000, 'page joined and published');
    expect(pageErrors).toEqual([]);
    expect(await page.evaluate(() => (window as unknown as { lk: Lk }).lk.events.find((e) => e.name === 'error'))).toBeUndefined();

    // The page decodes rtc-node's frames at their size and receives its audio.
    const stats = () => page.evaluate(() => (window as unknown as { lk: Lk }).lk.mediaStats());
    const seen = await waitFor(
      async () => {
        const s = await stats();
        const v = s.find((x) => x.identity === 'rs' && x.kind === 'video');
        const a = s.find((x) => x.identity === 'rs' && x.kind === 'audio');
        return v && v.framesDecoded > 10 && v.elementWidth > 0 && a && a.packetsReceived > 50 ? v : undefined;
      },
      30_000,
      'rtc-node media decoded by the page',
    );
    expect([seen.width, seen.elementWidth]).toEqual([320, 320]);

    // rtc-node reads the page's fake camera and microphone (Chromium's fake device beeps).
    const [audio, video] = await Promise.all([subscribed(rs, 'page', TrackKind.KIND_AUDIO), subscribed(rs, 'page', TrackKind.KIND_VIDEO)]);
    const [frames, loud] = await Promise.all([seeFrames(video, 20), hearSound(audio)]);
    expect(frames.at(-1)!.width).toBeGreaterThan(0);
    expect(loud).toBeGreaterThan(1000);

    // Data both ways, reliability kept: the page's reliable chat, rtc-node's lossy packet.
    const fromPage = new Promise<{ text: string; kind?: DataPacketKind; from?: string }>((resolve) =>
      rs.on(RoomEvent.DataReceived, (payload, p, kind, topic) => topic === 'chat' && resolve({ text: new TextDecoder().decode(payload), kind, from: p?.identity })),
    );
    await page.evaluate(() => (window as unknown as { lk: Lk }).lk.sendChat('hello rs'));
    expect(await fromPage).toEqual({ text: 'hello rs', kind: DataPacketKind.KIND_RELIABLE, from: 'page' });
    // Lossy may drop a packet on a loaded machine: sent until one arrives.
    const chat = () => page.evaluate(() => (window as unknown as { lk: Lk }).lk.chat);
    const lossy = await waitFor(
      async () => {
        await rs.localParticipant!.publishData(new TextEncoder().encode('hello page'), { reliable: false, topic: 'ticks' });
        return (await chat()).find((m) => m.text === 'hello page');
      },
      15_000,
      'lossy data at the page',
    );
    expect(lossy).toMatchObject({ from: 'rs', topic: 'ticks', kind: 1 }); // livekit-client's DataPacket_Kind.LOSSY

    // RPCs both ways.
    type Rpc = { lk: { room: { registerRpcMethod(m: string, h: (d: { payload: string; callerIdentity: string }) => Promise<string>): void; localParticipant: { performRpc(p: { destinationIdentity: string; method: string; payload: string }): Promise<string> } } } };
    await page.evaluate(() => (window as unknown as Rpc).lk.room.registerRpcMethod('shout', async (d) => `${d.payload.toUpperCase()} (for ${d.callerIdentity})`));
    expect(await rs.localParticipant!.performRpc({ destinationIdentity: 'page', method: 'shout', payload: 'quiet please' })).toBe('QUIET PLEASE (for rs)');
    rs.localParticipant!.registerRpcMethod('sum', async (d) => String((JSON.parse(d.payload) as number[]).reduce((a, b) => a + b, 0)));
    expect(await page.evaluate(() => (window as unknown as Rpc).lk.room.localParticipant.performRpc({ destinationIdentity: 'rs', method: 'sum', payload: '[1,2,39]' }))).toBe('42');

    await page.close();
    await waitFor(() => !rs.remoteParticipants.has('page') || undefined, 15_000, 'page gone at rtc-node');
  }, 90_000);
});

interface Lk {
  events: { name: string; data: unknown }[];
  chat: { from: string | null; text: string; topic: string | null; kind: number }[];
  mediaStats(): Promise<{ identity: string; kind: string; packetsReceived: number; framesDecoded: number; width: number; elementWidth: number }[]>;
  sendChat(text: string, opts?: Record<string, unknown>): Promise<void>;
}

/** The loudest sample of the first frame with sound in it. */
async function hearSound(track: RemoteTrack): Promise<number> {
  const reader = new AudioStream(track, SAMPLE_RATE, 1).getReader();
  try {
    for (;;) {
      const { value: frame, done } = await reader.read();
      if (done) throw new Error('audio stream ended before any sound');
      const peak = frame.data.reduce((m, s) => Math.max(m, Math.abs(s)), 0);
      if (peak > 1000) return peak;
    }
  } finally {
    await reader.cancel();
  }
}
