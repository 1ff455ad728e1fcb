// RTMP ingest end to end: FFmpeg pushes FLV to the gateway's RTMP server with a key from the real
// IngressClient; the stream becomes an ingress participant whose tracks decode on the subscriber side.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { IngressState_Status, IngressVideoEncodingPreset, IngressVideoOptions, ParticipantInfo_Kind, TrackType } from '@livekit/protocol';
import { IngressClient, IngressInput, RoomServiceClient, WebhookReceiver, type IngressInfo } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant, RemoteTrack } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { launchFfmpeg, runningFfmpegPids, type FfmpegProcess } from '../../src/media/ffmpeg.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe, recordProducers } from '../helpers/rtpRecorder.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let gw: Gateway;
let sink: WebhookSink;
let ingress: IngressClient;
let rooms: RoomServiceClient;
const publishers = new Set<FfmpegProcess>();
const people: NodeParticipant[] = [];
const clips: Record<'plain' | 'bframes' | 'lateBframes', string> = { plain: '', bframes: '', lateBframes: '' };

/** Clips encoded once, pushed with -re -c copy so the publisher costs almost nothing. */
async function encodeClip(name: string, args: string[]): Promise<string> {
  const file = path.join(os.tmpdir(), `roomgate-test-${name}.flv`);
  if (fs.existsSync(file)) return file;
  const tmp = `${file}.${process.pid}.flv`;
  const ff = launchFfmpeg([...args, '-y', tmp]);
  expect(await ff.exited, ff.stderrTail()).toBe(0);
  fs.renameSync(tmp, file);
  return file;
}

function push(input: string[], key: string, outArgs: string[] = ['-c', 'copy']): FfmpegProcess {
  const ff = launchFfmpeg([...input, ...outArgs, '-f', 'flv', `rtmp://127.0.0.1:${gw.rtmpPort}/live/${key}`]);
  publishers.add(ff);
  ff.exited.then(() => publishers.delete(ff)).catch((err: unknown) => console.error('dropping an exited publisher failed', err));
  return ff;
}

const pushClip = (clip: string, key: string) => push(['-re', '-i', clip], key);

async function stateOf(id: string): Promise<IngressInfo> {
  const [info] = await ingress.listIngress({ ingressId: id });
  return info!;
}

async function waitStatus(id: string, status: IngressState_Status, timeoutMs = 15_000): Promise<IngressInfo> {
  return waitFor(async () => {
    const info = await stateOf(id);
    return info.state?.status === status ? info : undefined;
  }, timeoutMs, `ingress ${id} ${IngressState_Status[status]}`);
}

async function create(room: string, identity: string, extra: Record<string, unknown> = {}): Promise<IngressInfo> {
  return ingress.createIngress(IngressInput.RTMP_INPUT, { roomName: room, participantIdentity: identity, participantName: `${identity} name`, ...extra });
}

function producersOf(room: string, identity: string) {
  const live = gw.rooms.liveRoom(room)!;
  return { router: live.routerForTesting, tracks: live.participant(identity).tracks };
}

beforeAll(async () => {
  [redis, sink] = await Promise.all([startRedis(), startWebhookSink()]);
  gw = await startTestGateway({
    ROOMGATE_REDIS_URL: redis.url,
    ROOMGATE_RTMP_ENABLED: 'true',
    ROOMGATE_RTMP_PORT: String(await freePort()),
    ROOMGATE_WEBHOOK_URLS: sink.url,
  });
  ingress = new IngressClient(gw.url, API_KEY, API_SECRET);
  rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
  clips.plain = await encodeClip('720p30-nob-aac-20s', [
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', '20',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '0', '-g', '30', '-pix_fmt', 'yuv420p', '-b:v', '1500k', '-c:a', 'aac', '-b:a', '96k',
  ]);
  clips.bframes = await encodeClip('360p30-bf2-aac-12s', [
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', '12',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '2', '-g', '30', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
  ]);
  // One second without B-frames, then B-frames: the passthrough decision at the first keyframe (no
  // composition offset, as GStreamer's flvmux sends it) meets B-frames a second later. Headers
  // in-band so that the second part's SPS reaches the decoder.
  const part = (bf: number, seconds: number) => [
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', String(seconds),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', String(bf), '-g', '30', '-x264-params', 'repeat-headers=1', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
  ];
  const parts = [await encodeClip('360p30-bf0-aac-1s', part(0, 1)), await encodeClip('360p30-bf2-aac-11s', part(2, 11))];
  const list = path.join(os.tmpdir(), `roomgate-test-late-bf-${process.pid}.txt`);
  fs.writeFileSync(list, parts.map((f) => `file '${f}'\n`).join(''));
  clips.lateBframes = await encodeClip('360p30-late-bf-aac-12s', ['-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy']);
}, 120_000);

afterAll(async () => {
  await Promise.all([...publishers].map((p) => p.stop()));
  await Promise.all(people.map((p) => p.leave()));
  await gw?.close();
  await Promise.all([redis?.stop(), sink?.close()]);
});

describe('RTMP ingress', () => {
  it('publishes H.264 passthrough + Opus into the room; state, webhooks, and the end of the stream', async () => {
    const info = await create('rtmp-main', 'obs', { participantMetadata: '{"studio":1}' });
    const pub = pushClip(clips.plain, info.streamKey);

    const live = await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    expect(live.state!.resourceId).toMatch(/^RT_/);
    expect(live.state!.startedAt).toBeGreaterThan(0n);
    expect(live.state!.tracks.map((t) => t.mimeType).sort()).toEqual(['audio/opus', 'video/H264']);

    const participants = await rooms.listParticipants('rtmp-main');
    expect(participants).toHaveLength(1);
    expect(participants[0]).toMatchObject({ identity: 'obs', name: 'obs name', metadata: '{"studio":1}', kind: ParticipantInfo_Kind.INGRESS });

    // The stream's measured properties appear with the next stats round.
    const measured = await waitFor(async () => {
      const s = (await stateOf(info.ingressId)).state!;
      return s.video && s.video.framerate > 0 && s.audio?.averageBitrate ? s : undefined;
    }, 10_000, 'input state');
    expect(measured.video).toMatchObject({ mimeType: 'video/h264', width: 1280, height: 720 });
    expect(measured.video!.framerate).toBeGreaterThan(25);
    expect(measured.video!.framerate).toBeLessThan(35);
    expect(measured.video!.averageBitrate).toBeGreaterThan(200_000);
    expect(measured.audio).toMatchObject({ mimeType: 'audio/aac', sampleRate: 44100, channels: 1 });
    const gop = await waitFor(async () => (await rooms.listParticipants('rtmp-main'))[0]?.attributes['ingress.keyframe_interval_ms'], 10_000, 'gop attribute');
    expect(Number(gop)).toBeGreaterThan(900);
    expect(Number(gop)).toBeLessThan(1100);

    // A WebRTC participant receives both tracks.
    const viewer = await join(gw.url, 'rtmp-main', 'viewer');
    people.push(viewer);
    const received = new Map<string, number>();
    const count = (t: RemoteTrack) => t.track.onReceiveRtp.subscribe(() => received.set(t.kind, (received.get(t.kind) ?? 0) + 1));
    viewer.remoteTracks.forEach(count);
    viewer.on('trackSubscribed', count);
    await waitFor(() => ((received.get('video') ?? 0) > 50 && (received.get('audio') ?? 0) > 50 ? true : undefined), 15_000, 'RTP at the viewer');

    // What the room carries decodes: H.264 1280x720 without reordering, and Opus.
    const { router, tracks } = producersOf('rtmp-main', 'obs');
    const file = await recordProducers(router, tracks.map((t) => t.producer), 4);
    const probed = probe(file);
    const video = probed.streams.find((s) => s.codec_type === 'video');
    const audio = probed.streams.find((s) => s.codec_type === 'audio');
    expect(video).toMatchObject({ codec_name: 'h264', width: 1280, height: 720 });
    expect(audio).toMatchObject({ codec_name: 'opus' });
    expect(probed.frames).toBeGreaterThan(60);

    // The publisher stops: INACTIVE, the participant leaves within 2 s.
    await pub.stop();
    const stoppedAt = Date.now();
    const ended = await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_INACTIVE);
    expect(ended.state!.endedAt).toBeGreaterThan(0n);
    await waitFor(async () => ((await rooms.listParticipants('rtmp-main')).some((p) => p.identity === 'obs') ? undefined : true), 5000, 'ingress participant left');
    expect(Date.now() - stoppedAt).toBeLessThan(4000);

    // Webhooks, verified with the SDK's receiver.
    const receiver = new WebhookReceiver(API_KEY, API_SECRET);
    const events = await waitFor(async () => {
      const all = await Promise.all(sink.received.map((r) => receiver.receive(r.body, r.auth)));
      const mine = all.filter((e) => e.ingressInfo?.ingressId === info.ingressId);
      return mine.some((e) => e.event === 'ingress_ended') ? mine : undefined;
    }, 10_000, 'ingress webhooks');
    expect(events.map((e) => e.event)).toEqual(['ingress_started', 'ingress_ended']);
    expect(events[0]!.ingressInfo!.state!.status).toBe(IngressState_Status.ENDPOINT_PUBLISHING);
    expect(events[0]!.ingressInfo!.streamKey).toBe('');
    // Participant events are ordered per room, ingress events per ingress: wait for both queues.
    const obsEvents = await waitFor(async () => {
      const all = await Promise.all(sink.received.map((r) => receiver.receive(r.body, r.auth)));
      const mine = all.filter((e) => e.participant?.identity === 'obs').map((e) => e.event);
      return mine.includes('participant_left') ? mine : undefined;
    }, 10_000, 'participant webhooks');
    expect(obsEvents).toEqual(expect.arrayContaining(['participant_joined', 'track_published', 'participant_left']));
  });

  it('takes the same key again, and a second concurrent push replaces the first at once', async () => {
    const info = await create('rtmp-again', 'cam');
    const first = pushClip(clips.plain, info.streamKey);
    const one = await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    const second = pushClip(clips.plain, info.streamKey);
    // The first connection is dropped (its FFmpeg fails writing) as soon as the second one publishes.
    const code = await Promise.race([first.exited, new Promise((r) => setTimeout(() => r('still running'), 8000))]);
    expect(code).not.toBe('still running');
    const two = await waitFor(async () => {
      const s = await stateOf(info.ingressId);
      return s.state?.status === IngressState_Status.ENDPOINT_PUBLISHING && s.state.resourceId !== one.state!.resourceId ? s : undefined;
    }, 10_000, 'second session publishing');
    expect(two.state!.startedAt).toBeGreaterThan(one.state!.startedAt);
    const ps = await rooms.listParticipants('rtmp-again');
    expect(ps.map((p) => p.identity)).toEqual(['cam']);
    expect(ps[0]!.tracks).toHaveLength(2);
    await second.stop();
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_INACTIVE);
  });

  it('re-encodes a stream with B-frames (passthrough fallback) so that it still plays', async () => {
    const info = await create('rtmp-bframes', 'bcam');
    const pub = pushClip(clips.bframes, info.streamKey);
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    const { router, tracks } = producersOf('rtmp-bframes', 'bcam');
    const probed = probe(await recordProducers(router, tracks.map((t) => t.producer), 3));
    const video = probed.streams.find((s) => s.codec_type === 'video');
    expect(video).toMatchObject({ codec_name: 'h264', width: 640, height: 360, has_b_frames: 0 });
    expect(probed.frames).toBeGreaterThan(30);
    await pub.stop();
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_INACTIVE);
  });

  it('B-frames that appear after a passthrough start restart the video re-encoded, as the same publish', async () => {
    const info = await create('rtmp-late-bframes', 'lbcam');
    const pub = pushClip(clips.lateBframes, info.streamKey);
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    // The passthrough video track, then the re-encoded one that replaced it.
    const receiver = new WebhookReceiver(API_KEY, API_SECRET);
    await waitFor(async () => {
      const all = await Promise.all(sink.received.map((r) => receiver.receive(r.body, r.auth)));
      const published = all.filter((e) => e.event === 'track_published' && e.participant?.identity === 'lbcam' && e.track?.type === TrackType.VIDEO);
      return published.length >= 2 ? true : undefined;
    }, 20_000, 'the video track published twice');
    const { router, tracks } = producersOf('rtmp-late-bframes', 'lbcam');
    const probed = probe(await recordProducers(router, tracks.map((t) => t.producer), 3));
    expect(probed.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', width: 640, height: 360, has_b_frames: 0 });
    expect(probed.frames).toBeGreaterThan(30);
    const state = (await stateOf(info.ingressId)).state!;
    expect(state.status).toBe(IngressState_Status.ENDPOINT_PUBLISHING);
    expect(state.error).toBe('');
    await pub.stop();
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_INACTIVE);
  });

  it('transcodes to simulcast layers when the ingress asks for it', async () => {
    const info = await create('rtmp-layers', 'tcam', {
      enableTranscoding: true,
      video: new IngressVideoOptions({ encodingOptions: { case: 'preset', value: IngressVideoEncodingPreset.H264_540P_25FPS_2_LAYERS } }),
    });
    const pub = push(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=960x540:rate=25', '-f', 'lavfi', '-i', 'sine'], info.streamKey, [
      '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
    ]);
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING, 20_000);
    const { router, tracks } = producersOf('rtmp-layers', 'tcam');
    const video = tracks.find((t) => t.producer.kind === 'video')!;
    expect(video.info.simulcast).toBe(true);
    expect(video.producer.rtpParameters.encodings).toHaveLength(2);
    expect(video.info).toMatchObject({ width: 960, height: 540 });
    // Both layers carry media.
    await waitFor(async () => {
      const stats = await video.producer.getStats();
      return stats.length === 2 && stats.every((s) => s.packetCount > 20) ? true : undefined;
    }, 20_000, 'two layers flowing');
    const probed = probe(await recordProducers(router, [video.producer], 3));
    expect(probed.streams[0]).toMatchObject({ codec_name: 'h264', has_b_frames: 0 });
    await pub.stop();
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_INACTIVE);
  });

  it('audio-only and video-only streams publish just the track they have', async () => {
    const a = await create('rtmp-partial', 'radio');
    const v = await create('rtmp-partial', 'silent-cam');
    const audioOnly = push(['-re', '-f', 'lavfi', '-i', 'sine=sample_rate=48000'], a.streamKey, ['-c:a', 'aac']);
    const videoOnly = push(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15'], v.streamKey, [
      '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '0', '-g', '15', '-pix_fmt', 'yuv420p',
    ]);
    const [ai, vi] = await Promise.all([
      waitStatus(a.ingressId, IngressState_Status.ENDPOINT_PUBLISHING),
      waitStatus(v.ingressId, IngressState_Status.ENDPOINT_PUBLISHING),
    ]);
    expect(ai.state!.tracks.map((t) => t.mimeType)).toEqual(['audio/opus']);
    expect(vi.state!.tracks.map((t) => t.mimeType)).toEqual(['video/H264']);
    await Promise.all([audioOnly.stop(), videoOnly.stop()]);
    await Promise.all([waitStatus(a.ingressId, IngressState_Status.ENDPOINT_INACTIVE), waitStatus(v.ingressId, IngressState_Status.ENDPOINT_INACTIVE)]);
  });

  it('refuses unknown keys, disabled ingresses and codecs the room cannot carry', async () => {
    const unknown = push(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '5'], 'not-a-key', ['-c:v', 'libx264', '-preset', 'ultrafast']);
    expect(await unknown.exited).not.toBe(0);

    const off = await create('rtmp-refused', 'off', { enabled: false });
    const disabled = push(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '5'], off.streamKey, ['-c:v', 'libx264', '-preset', 'ultrafast']);
    expect(await disabled.exited).not.toBe(0);
    expect((await stateOf(off.ingressId)).state!.status).toBe(IngressState_Status.ENDPOINT_INACTIVE);

    // Sorenson H.263 (FLV's own codec): passthrough is impossible, so the ingress reports why.
    const h263 = await create('rtmp-refused', 'h263');
    const old = push(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15', '-f', 'lavfi', '-i', 'sine'], h263.streamKey, ['-c:v', 'flv1', '-c:a', 'aac']);
    const failed = await waitStatus(h263.ingressId, IngressState_Status.ENDPOINT_ERROR);
    expect(failed.state!.error).toMatch(/Sorenson H\.263 cannot be passed through: send H\.264/);
    expect(await old.exited).not.toBe(0); // the gateway hung up
    expect(gw.rooms.liveRoom('rtmp-refused')?.participantCount ?? 0).toBe(0);
  });

  it('survives malformed RTMP and oversized messages from anyone, before any key is checked', async () => {
    /** Completes the RTMP handshake, then sends `chunks`; resolves when the gateway hangs up. */
    const attack = (chunks: Buffer[]) =>
      new Promise<string>((resolve) => {
        const sock = net.connect(gw.rtmpPort, '127.0.0.1');
        let got = 0;
        sock.on('data', (d) => {
          got += d.length;
          if (got >= 1 + 1536 * 2 && got - d.length < 1 + 1536 * 2) {
            sock.write(Buffer.alloc(1536)); // C2
            for (const c of chunks) sock.write(c);
          }
        });
        sock.on('error', () => undefined);
        sock.on('close', () => resolve('closed'));
        sock.write(Buffer.concat([Buffer.from([3]), Buffer.alloc(1536)])); // C0 + C1
        setTimeout(() => {
          sock.destroy();
          resolve('still open');
        }, 5000);
      });
    const amfString = (v: string) => Buffer.concat([Buffer.from([0x02, v.length >> 8, v.length & 0xff]), Buffer.from(v)]);
    const amfNumber = (n: number) => {
      const b = Buffer.alloc(9);
      b.writeDoubleBE(n, 1);
      return b;
    };
    const command = (body: Buffer, cid = 3) => {
      const h = Buffer.alloc(12);
      h[0] = cid;
      h.writeUIntBE(body.length, 4, 3);
      h[7] = 0x14; // AMF0 command
      return Buffer.concat([h, body]);
    };
    // connect without tcUrl: node-media-server's parser throws (new URL(undefined)).
    const connect = command(Buffer.concat([amfString('connect'), amfNumber(1), Buffer.from([0x03]), Buffer.from([0, 3]), Buffer.from('app'), amfString('live'), Buffer.from([0, 0, 9])]));
    expect(await attack([connect])).toBe('closed');
    // 16 MB messages declared on many chunk streams: refused before anything is allocated.
    const huge = Array.from({ length: 20 }, (_, i) => {
      const h = Buffer.alloc(12);
      h[0] = 4 + i;
      h.writeUIntBE(0xffffff, 4, 3);
      h[7] = 0x09;
      return Buffer.concat([h, Buffer.alloc(16)]);
    });
    const rssBefore = process.memoryUsage().rss;
    expect(await attack(huge)).toBe('closed');
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(100 * 1024 * 1024);
    // Still serving.
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    const info = await create('rtmp-after-attack', 'fine');
    const pub = pushClip(clips.plain, info.streamKey);
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    await pub.stop();
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_INACTIVE);
  });

  it('DeleteIngress stops a live stream; no FFmpeg is left behind', async () => {
    const info = await create('rtmp-delete', 'doomed');
    const pub = pushClip(clips.plain, info.streamKey);
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    await ingress.deleteIngress(info.ingressId);
    expect(await pub.exited).not.toBe(0); // disconnected by the gateway
    await waitFor(async () => ((await rooms.listParticipants('rtmp-delete')).length === 0 ? true : undefined), 5000, 'participant gone');
    expect(await ingress.listIngress({ ingressId: info.ingressId })).toEqual([]);
    await waitFor(() => (runningFfmpegPids().length === 0 ? true : undefined), 10_000, 'no FFmpeg running');
  });
});
