// Stock livekit-client 2.23.0 (npm, bundled by the gateway for its /lk demo page) in headless Debian
// Chromium with fake devices, against a real gateway on loopback: two LiveKit participants publish
// and decode each other, exchange data, and meet a roomgate-SDK participant; a LiveKit client
// watches an RTMP ingress (OBS's shape) and a room composite records two LiveKit clients; bad input
// over the same protocol gets a reason, never a crash.
import {
  AddTrackRequest,
  DataPacket_Kind,
  SessionDescription,
  SignalRequest,
  SignalResponse,
  SimulcastCodec,
  TrackType,
  type RequestResponse,
} from '@livekit/protocol';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { decodeJwt } from 'jose';
import { EgressClient, EgressStatus, EncodedFileOutput, EncodedFileType, IngressClient, IngressInput, RoomServiceClient } from 'livekit-server-sdk';
import type { NodeParticipant, RemoteTrack } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import grid from '../../templates/layouts/grid.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { frameAt, frameTimes } from '../helpers/composite.ts';
import { egressLookups, inProcessWorker } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { shape, startRtmpPublisher } from '../helpers/publisherCorpus.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { expectMediaFrom, lkChat, lkStats, openLk, type Lk } from '../helpers/livekitPage.ts';
import { join, joinToken, nextEvent } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let browser: Browser;
const nodes: NodeParticipant[] = [];

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_RTMP_ENABLED: 'true', ROOMGATE_RTMP_PORT: String(await freePort()) });
  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.leave().catch(() => undefined)));
  await browser?.close();
  await gw?.close();
  await redis?.stop();
});

describe('stock livekit-client in headless Chromium', () => {
  it('two LiveKit participants decode each other and exchange data with a topic', async () => {
    const alice = await openLk(browser, gw.url, 'lk-room', 'alice');
    const bob = await openLk(browser, gw.url, 'lk-room', 'bob');
    await expectMediaFrom(alice, 'bob');
    await expectMediaFrom(bob, 'alice');

    // The camera went up as VP8 simulcast with its layers in TrackInfo.
    const listed = await gw.rooms.listParticipants('lk-room');
    const cam = listed.find((p) => p.identity === 'alice')!.tracks.find((t) => t.type === 1);
    expect(cam?.mimeType).toBe('video/VP8');
    expect(cam?.simulcast).toBe(true);
    expect(cam?.layers.length).toBeGreaterThan(1);

    // UpdateTrackSettings: bob asks for alice's lowest simulcast layer and gets a small picture.
    type Pub = { setVideoQuality(q: number): void };
    type LkRooms = { lk: { room: { getParticipantByIdentity(i: string): { getTrackPublication(s: string): Pub } } } };
    await bob.evaluate(() => (window as unknown as LkRooms).lk.room.getParticipantByIdentity('alice').getTrackPublication('camera').setVideoQuality(0));
    const small = await waitFor(
      async () => {
        const v = (await lkStats(bob)).find((x) => x.identity === 'alice' && x.kind === 'video');
        return v && v.width > 0 && v.width <= 400 ? v : undefined;
      },
      30_000,
      'lowest simulcast layer at bob',
    );
    expect(small.width).toBeLessThanOrEqual(cam!.layers.map((l) => l.width).sort((a, b) => a - b)[0]!);

    // Without canUpdateOwnMetadata the request is refused with the server's reason.
    const refused = await alice.evaluate(() =>
      (window as unknown as { lk: { room: { localParticipant: { setMetadata(m: string): Promise<void> } } } }).lk.room.localParticipant.setMetadata('x').then(
        () => 'accepted',
        (err: Error) => err.message,
      ),
    );
    expect(refused).toMatch(/canUpdateOwnMetadata/);

    await alice.evaluate(() => (window as unknown as { lk: Lk }).lk.sendChat('hello bob', { topic: 'greetings' }));
    await waitFor(async () => (await lkChat(bob)).find((m) => m.text === 'hello bob'), 15_000, 'reliable data at bob');
    expect((await lkChat(bob)).find((m) => m.text === 'hello bob')).toMatchObject({ from: 'alice', topic: 'greetings', kind: DataPacket_Kind.RELIABLE });

    // An RPC round trip: request, ack and response are DataPackets relayed to their destination.
    type Rpc = { lk: { room: { registerRpcMethod(m: string, h: (d: { payload: string; callerIdentity: string }) => Promise<string>): void; localParticipant: { performRpc(p: { destinationIdentity: string; method: string; payload: string }): Promise<string> } } } };
    await bob.evaluate(() => (window as unknown as Rpc).lk.room.registerRpcMethod('greet', async (d) => `hi ${d.payload} from bob, called by ${d.callerIdentity}`));
    const reply = await alice.evaluate(() => (window as unknown as Rpc).lk.room.localParticipant.performRpc({ destinationIdentity: 'bob', method: 'greet', payload: 'alice' }));
    expect(reply).toBe('hi alice from bob, called by alice');

    // A text stream (header, chunks, trailer: DataPackets the gateway relays as sent), read whole.
    type Streams = {
      lk: {
        texts?: string[];
        room: {
          registerTextStreamHandler(topic: string, h: (reader: { readAll(): Promise<string> }, from: { identity: string }) => void): void;
          localParticipant: { sendText(text: string, opts: { topic: string }): Promise<unknown> };
        };
      };
    };
    await bob.evaluate(() => {
      const lk = (window as unknown as Streams).lk;
      lk.texts = [];
      lk.room.registerTextStreamHandler('notes', (reader, from) => {
        reader.readAll().then(
          (t) => lk.texts!.push(`${from.identity}: ${t}`),
          (err: Error) => lk.texts!.push(`error: ${err.message}`),
        );
      });
    });
    const long = 'x'.repeat(40_000); // several chunks
    await alice.evaluate((text) => (window as unknown as Streams).lk.room.localParticipant.sendText(text, { topic: 'notes' }), long);
    const streamed = await waitFor(() => bob.evaluate(() => (window as unknown as Streams).lk.texts![0]), 15_000, 'the text stream at bob');
    expect(streamed).toBe(`alice: ${long}`);

    // RoomService SendData reaches a LiveKit client as a user packet without a sender.
    await gw.rooms.sendData('lk-room', { data: new TextEncoder().encode('from the server'), topic: 'ops', destinationIdentities: ['bob'], destinationSids: [] });
    await waitFor(async () => (await lkChat(bob)).find((m) => m.text === 'from the server'), 15_000, 'SendData at bob');
    expect((await lkChat(bob)).find((m) => m.text === 'from the server')).toMatchObject({ from: null, topic: 'ops' });

    // A mute is a signal request; the other side sees the track muted.
    await alice.evaluate(() => (window as unknown as { lk: { room: { localParticipant: { setMicrophoneEnabled(on: boolean): Promise<unknown> } } } }).lk.room.localParticipant.setMicrophoneEnabled(false));
    await bob.waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.some((e) => e.name === 'trackMuted' && e.data === 'alice:audio'), undefined, { timeout: 15_000 });

    // Connection quality (coarse: mediasoup's scores of what bob publishes) reaches alice's client.
    type Quality = { lk: { room: { getParticipantByIdentity(i: string): { connectionQuality: string } | undefined } } };
    await waitFor(
      () => alice.evaluate(() => (window as unknown as Quality).lk.room.getParticipantByIdentity('bob')?.connectionQuality === 'excellent' || undefined),
      20_000,
      'bob\'s connection quality at alice',
    );

    // UpdateParticipant through the stock RoomServiceClient: bob's client gets a refreshed token that
    // carries the new metadata and grants (refresh_token); the resume below connects with it.
    type Engine = { lk: { room: { engine: { token: string } } } };
    const tokenOf = () => bob.evaluate(() => (window as unknown as Engine).lk.room.engine.token);
    const joinedWith = await tokenOf();
    await new RoomServiceClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS).updateParticipant('lk-room', 'bob', {
      metadata: 'refreshed',
      permission: { canPublish: true, canSubscribe: true, canPublishData: true, canUpdateMetadata: true },
    });
    const refreshed = decodeJwt(await waitFor(async () => ((await tokenOf()) !== joinedWith ? tokenOf() : undefined), 15_000, 'a refreshed token at bob'));
    expect(refreshed).toMatchObject({ sub: 'bob', metadata: 'refreshed', video: { room: 'lk-room', roomJoin: true, canUpdateOwnMetadata: true } });
    expect(refreshed.exp! - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(600);
    // The new grant applies live: bob may now set his own metadata.
    type Meta = { lk: { room: { localParticipant: { setMetadata(m: string): Promise<void> } } } };
    await bob.evaluate(() => (window as unknown as Meta).lk.room.localParticipant.setMetadata('allowed now'));
    expect((await gw.rooms.listParticipants('lk-room')).find((p) => p.identity === 'bob')?.metadata).toBe('allowed now');

    // Drop bob's signaling WebSocket: the client resumes the same session (reconnect=1) with its
    // tracks (and its refreshed token), and media keeps flowing both ways.
    type LkRoom = { lk: { room: { localParticipant: { sid: string }; simulateScenario(s: string): Promise<void> } } };
    const sid = await bob.evaluate(() => (window as unknown as LkRoom).lk.room.localParticipant.sid);
    await bob.evaluate(() => (window as unknown as LkRoom).lk.room.simulateScenario('signal-reconnect'));
    await bob.waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.some((e) => e.name === 'reconnected'), undefined, { timeout: 30_000 });
    expect((await gw.rooms.listParticipants('lk-room')).find((p) => p.identity === 'bob')?.sid).toBe(sid);
    await expectMediaFrom(alice, 'bob');
    await expectMediaFrom(bob, 'alice', false); // alice's microphone is muted

    // alice's camera goes quiet without a mute (its sender drops the track): once mediasoup sees
    // its streams inactive, bob's client gets stream_state PAUSED for it, and ACTIVE when it is back.
    type Sender = { lk: { room: { localParticipant: { getTrackPublication(s: string): { track: { mediaStreamTrack: MediaStreamTrack; sender: RTCRtpSender } } } } } };
    type Remote = { lk: { room: { getParticipantByIdentity(i: string): { getTrackPublication(s: string): { track?: { streamState: string } } } } } };
    const streamState = () => bob.evaluate(() => (window as unknown as Remote).lk.room.getParticipantByIdentity('alice').getTrackPublication('camera').track?.streamState);
    await alice.evaluate(() => (window as unknown as Sender).lk.room.localParticipant.getTrackPublication('camera').track.sender.replaceTrack(null));
    await waitFor(async () => ((await streamState()) === 'paused' ? true : undefined), 20_000, 'alice\'s camera paused at bob');
    await alice.evaluate(() => {
      const t = (window as unknown as Sender).lk.room.localParticipant.getTrackPublication('camera').track;
      return t.sender.replaceTrack(t.mediaStreamTrack);
    });
    await waitFor(async () => ((await streamState()) === 'active' ? true : undefined), 20_000, 'alice\'s camera active again at bob');

    // MutePublishedTrack through the stock RoomServiceClient: alice's client mutes its own camera,
    // and bob sees it muted.
    const camSid = (await gw.rooms.listParticipants('lk-room')).find((p) => p.identity === 'alice')!.tracks.find((t) => t.type === 1)!.sid;
    await new RoomServiceClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS).mutePublishedTrack('lk-room', 'alice', camSid, true);
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.some((e) => e.name === 'trackMuted' && e.data === 'alice:video'), undefined, { timeout: 15_000 });
    }

    await bob.close();
    await alice.waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.some((e) => e.name === 'participantDisconnected' && e.data === 'bob'));
    await alice.close();
  }, 150_000);

  it('a LiveKit client and a roomgate-SDK participant receive each other\'s media and data', async () => {
    const node = await join(gw.url, 'mixed-room', 'node');
    nodes.push(node);
    await node.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'] });
    await node.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const rtp = new Map<string, number>();
    const count = (t: RemoteTrack) => {
      if (t.participantIdentity === 'carol') t.track.onReceiveRtp.subscribe(() => rtp.set(t.kind, (rtp.get(t.kind) ?? 0) + 1));
    };
    node.on('trackSubscribed', count);

    const carol = await openLk(browser, gw.url, 'mixed-room', 'carol', { canUpdateOwnMetadata: true });
    await expectMediaFrom(carol, 'node');
    await waitFor(() => ((rtp.get('video') ?? 0) > 30 && (rtp.get('audio') ?? 0) > 30 ? true : undefined), 30_000, 'carol\'s RTP at the Node participant');

    const fromCarol = nextEvent(node, 'dataReceived', (m) => m.topic === 'chat', 15_000);
    await carol.evaluate(() => (window as unknown as { lk: Lk }).lk.sendChat('hi node'));
    const [msg] = await fromCarol;
    expect(new TextDecoder().decode(msg.payload)).toBe('hi node');
    expect(msg.from).toBe('carol');

    // UpdateSubscription: carol unsubscribes from the Node participant's video (its m-line goes
    // inactive in the next subscriber offer) and subscribes again (the freed m-line is reused, so
    // her subscriber PeerConnection keeps its number of transceivers), decoding again.
    type Sub = { lk: { room: { getParticipantByIdentity(i: string): { getTrackPublication(s: string): { setSubscribed(on: boolean): void } } } } };
    type Pcs = { lk: { room: { engine: { pcManager: { subscriber: { getTransceivers(): unknown[] } } } } } };
    const transceivers = () => carol.evaluate(() => (window as unknown as Pcs).lk.room.engine.pcManager.subscriber.getTransceivers().length);
    const before = await transceivers();
    await carol.evaluate(() => (window as unknown as Sub).lk.room.getParticipantByIdentity('node').getTrackPublication('camera').setSubscribed(false));
    await carol.waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.some((e) => e.name === 'trackUnsubscribed' && e.data === 'node:video'), undefined, { timeout: 20_000 });
    await carol.evaluate(() => (window as unknown as Sub).lk.room.getParticipantByIdentity('node').getTrackPublication('camera').setSubscribed(true));
    await carol.waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.filter((e) => e.name === 'trackSubscribed' && e.data === 'node:video').length === 2, undefined, { timeout: 20_000 });
    await expectMediaFrom(carol, 'node');
    expect(await transceivers()).toBe(before);

    // setMetadata resolves once carol's own update comes back; the Node participant sees it too.
    const updated = nextEvent(node, 'participantUpdated', (p) => p.identity === 'carol' && p.metadata === 'on stage', 15_000);
    await carol.evaluate(() => (window as unknown as { lk: { room: { localParticipant: { setMetadata(m: string): Promise<void> } } } }).lk.room.localParticipant.setMetadata('on stage'));
    await updated;

    await node.publishData(new TextEncoder().encode('hi carol'), { topic: 'chat' });
    await waitFor(async () => (await lkChat(carol)).find((m) => m.text === 'hi carol'), 15_000, 'roomgate data at carol');
    expect((await lkChat(carol)).find((m) => m.text === 'hi carol')).toMatchObject({ from: 'node', topic: 'chat' });

    // livekit-client unpublishes by renegotiating (its m-line goes inactive): the track leaves the room.
    const cam = (await gw.rooms.listParticipants('mixed-room')).find((p) => p.identity === 'carol')!.tracks.find((t) => t.type === 1)!;
    const unpublished = nextEvent(node, 'trackUnpublished', (identity, sid) => identity === 'carol' && sid === cam.sid, 20_000);
    await carol.evaluate(async () => {
      const lp = (window as unknown as { lk: { room: { localParticipant: { getTrackPublication(s: string): { track: unknown }; unpublishTrack(t: unknown): Promise<unknown> } } } }).lk.room.localParticipant;
      await lp.unpublishTrack(lp.getTrackPublication('camera').track);
    });
    await unpublished;
    await carol.close();
  }, 150_000);

  it('watches an RTMP ingress (OBS without B-frames), and a room composite egress records two LiveKit clients', async () => {
    // An RTMP ingress is a participant like any other: a LiveKit client decodes its video and
    // receives its audio.
    const ingress = new IngressClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
    const obs = shape('obs-nob-2s');
    const info = await ingress.createIngress(IngressInput.RTMP_INPUT, { roomName: 'lk-rec', participantIdentity: 'obs', name: 'obs' });
    const publisher = await startRtmpPublisher(obs, `rtmp://127.0.0.1:${gw.rtmpPort}/live/${info.streamKey}`);
    const worker = await inProcessWorker(gw);
    try {
      const dave = await openLk(browser, gw.url, 'lk-rec', 'dave');
      await expectMediaFrom(dave, 'obs');
      await publisher.stop();
      await ingress.deleteIngress(info.ingressId);
      await dave.waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.some((e) => e.name === 'participantDisconnected' && e.data === 'obs'), undefined, { timeout: 20_000 });

      // A second LiveKit client joins; the room composite shows both cameras, live.
      const erin = await openLk(browser, gw.url, 'lk-rec', 'erin');
      await expectMediaFrom(dave, 'erin');
      const egress = new EgressClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
      const { status } = egressLookups(() => egress);
      const started = await egress.startRoomCompositeEgress('lk-rec', { file: new EncodedFileOutput({ fileType: EncodedFileType.MP4, filepath: 'lk/{room_name}' }) }, { layout: 'grid' });
      await status(started.egressId, EgressStatus.EGRESS_ACTIVE, 30_000);
      // The recording's length, not a wait for readiness: long enough for two pictures 2 s apart.
      await new Promise((r) => setTimeout(r, 5000));
      await egress.stopEgress(started.egressId);
      const ended = await status(started.egressId, EgressStatus.EGRESS_COMPLETE, 30_000);
      const file = ended.fileResults[0]!.location;

      // Each participant's tile changes between two pictures of the recording (Chromium's fake
      // camera animates): live video in both, not a name card or a frozen first frame.
      const W = 1280;
      const H = 720;
      const p = (identity: string, joinedAt: number) => ({ identity, name: identity, joinedAt, tracks: [{ sid: `TR_${identity}`, kind: 'video' as const, source: 'camera' as const, muted: false, flowing: true }] });
      const tiles = grid.plan({ participants: [p('dave', 1), p('erin', 2)], speakers: [], width: W, height: H, theme: 'dark' }).tiles;
      expect(tiles.map((t) => t.identity).sort()).toEqual(['dave', 'erin']);
      const times = frameTimes(file);
      const last = times.at(-1)! - times[0]!;
      expect(last).toBeGreaterThan(3);
      const [a, b] = [await frameAt(file, last - 2.7), await frameAt(file, last - 0.2)];
      expect([a.length, b.length]).toEqual([W * H * 3, W * H * 3]);
      for (const t of tiles) {
        let changed = 0;
        for (let y = t.y; y < t.y + t.h; y += 4) {
          for (let x = t.x; x < t.x + t.w; x += 4) {
            const i = (y * W + x) * 3;
            if (Math.abs(a[i]! - b[i]!) + Math.abs(a[i + 1]! - b[i + 1]!) + Math.abs(a[i + 2]! - b[i + 2]!) > 48) changed++;
          }
        }
        expect(changed, `pixels of ${t.identity}'s tile that changed in 2.5 s`).toBeGreaterThan(100);
      }
      await Promise.all([dave.close(), erin.close()]);
    } finally {
      await publisher.stop();
      await worker.close();
    }
  }, 150_000);
});

/**
 * A publisher offer with VP9 only, as a client that ignored enabled_publish_codecs would send;
 * `ghost` adds a VP8 m-line for a track no add_track announced.
 */
function vp9Offer(ghost = false): string {
  const media = (mid: string, pt: number, codec: string, track: string, ssrc: number) => [
    `m=video 9 UDP/TLS/RTP/SAVPF ${pt}`,
    'c=IN IP4 0.0.0.0',
    'a=ice-ufrag:Ab12',
    'a=ice-pwd:hQ3lJYk0wC4gkWm1nL3x2B7a',
    'a=fingerprint:sha-256 5A:1F:0B:6C:22:0E:91:3B:7D:AF:25:8C:61:E4:02:97:C3:11:5B:88:0D:F2:6E:41:A9:3C:74:D0:B8:25:9E:16',
    'a=setup:actpass',
    `a=mid:${mid}`,
    'a=sendonly',
    `a=msid:s ${track}`,
    'a=rtcp-mux',
    `a=rtpmap:${pt} ${codec}/90000`,
    `a=ssrc:${ssrc} cname:c`,
  ];
  return [
    'v=0',
    'o=- 1 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    `a=group:BUNDLE ${ghost ? '0 1' : '0'}`,
    ...media('0', 98, 'VP9', 'vp9-cam', 4242),
    ...(ghost ? media('1', 96, 'VP8', 'ghost', 4343) : []),
    '',
  ].join('\r\n');
}

describe('bad input on LiveKit signaling', () => {
  /** A WebSocket speaking the protocol's framing directly, to send what no client would. */
  async function rawSession(identity: string) {
    const token = await joinToken('bad-room', identity);
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/rtc?access_token=${token}&sdk=js&protocol=17&auto_subscribe=1`);
    const frames: SignalResponse[] = [];
    ws.on('message', (data: Buffer) => frames.push(SignalResponse.fromBinary(data)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await waitFor(() => frames.find((f) => f.message.case === 'join'), 10_000, 'join response');
    const next = async (what: string) => {
      const seen = frames.length;
      return waitFor(() => frames.slice(seen).find((f) => f.message.case === 'requestResponse')?.message.value as RequestResponse | undefined, 10_000, what);
    };
    return { ws, frames, next };
  }

  it('answers malformed frames, unknown requests, unsupported codecs and unknown cids with a reason and stays up', async () => {
    const s = await rawSession('mallory');

    let answer = s.next('malformed protobuf');
    s.ws.send(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect((await answer).message).toMatch(/not a valid SignalRequest/);

    answer = s.next('unknown request type');
    s.ws.send(Buffer.from([0x98, 0x06, 0x01])); // field 99
    expect((await answer).message).toMatch(/no known message/);

    answer = s.next('text frame');
    s.ws.send('{"offer":{}}');
    expect((await answer).message).toMatch(/binary protobuf/);

    answer = s.next('unsupported codec');
    const av1 = new AddTrackRequest({ cid: 'v1', type: TrackType.VIDEO, simulcastCodecs: [new SimulcastCodec({ codec: 'av1', cid: 'v1' })] });
    s.ws.send(new SignalRequest({ message: { case: 'addTrack', value: av1 } }).toBinary());
    const refused = await answer;
    expect(refused.message).toMatch(/codec 'av1' is not supported/);
    expect(refused.request.case).toBe('addTrack');

    // An offer whose only video codec the rooms cannot carry: that m-line is rejected (port 0) with a reason.
    s.ws.send(new SignalRequest({ message: { case: 'addTrack', value: new AddTrackRequest({ cid: 'vp9-cam', type: TrackType.VIDEO }) } }).toBinary());
    await waitFor(() => s.frames.find((f) => f.message.case === 'trackPublished'), 10_000, 'track_published');
    answer = s.next('unsupported codec in the offer');
    const seen = s.frames.length;
    s.ws.send(new SignalRequest({ message: { case: 'offer', value: new SessionDescription({ type: 'offer', sdp: vp9Offer(), id: 2 }) } }).toBinary());
    expect((await answer).message).toMatch(/no supported codec offered \(have VP9/);
    const sdpAnswer = await waitFor(() => s.frames.slice(seen).find((f) => f.message.case === 'answer')?.message.value as SessionDescription | undefined, 10_000, 'answer');
    expect(sdpAnswer.sdp).toMatch(/m=video 0 /);
    expect(sdpAnswer.id).toBe(2);

    // A re-offer adding an m-line for a track no add_track announced: rejected with a reason.
    answer = s.next('unknown cid');
    s.ws.send(new SignalRequest({ message: { case: 'offer', value: new SessionDescription({ type: 'offer', sdp: vp9Offer(true), id: 3 }) } }).toBinary());
    expect((await answer).message).toMatch(/no add_track for track 'ghost'/);

    answer = s.next('bad SDP');
    s.ws.send(new SignalRequest({ message: { case: 'offer', value: new SessionDescription({ type: 'offer', sdp: 'not sdp', id: 1 }) } }).toBinary());
    expect((await answer).message).toMatch(/not SDP/);

    // Still in the room, and the gateway still answers.
    expect((await gw.rooms.listParticipants('bad-room')).map((p) => p.identity)).toEqual(['mallory']);
    const left = new Promise<number>((resolve) => s.ws.once('close', (code) => resolve(code)));
    s.ws.send(new SignalRequest({ message: { case: 'leave', value: {} as never } }).toBinary());
    expect(await left).toBe(1000);
    await waitFor(async () => ((await gw.rooms.listParticipants('bad-room')).length === 0 ? true : undefined), 5000, 'mallory gone');
  }, 60_000);

  it('refuses a bad token at the upgrade, and sends v1 clients back to v0 with 404s', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/rtc?access_token=nope&sdk=js&protocol=17`);
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => reject(new Error('opened with a bad token')));
      ws.once('error', () => undefined);
    });
    expect(status).toBe(401);
    const token = await joinToken('bad-room', 'v1');
    const v1 = await fetch(`${gw.url}/rtc/v1/validate?access_token=${token}`);
    expect(v1.status).toBe(404);
    expect(await v1.text()).not.toContain('requested room does not exist');
    const v0 = await fetch(`${gw.url}/rtc/validate?access_token=${token}`);
    expect(v0.status).toBe(200);
    const bad = await fetch(`${gw.url}/rtc/validate?access_token=nope`);
    expect(bad.status).toBe(401);
  });
});
