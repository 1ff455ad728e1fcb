// One room over two mediasoup workers (issue 16, part 1): with a consumer budget of 2, the first
// subscriber stays on the room's worker and the next ones get an overflow router on the other,
// fed by pipeToRouter. Every subscriber decodes the publisher's video and audio, a keyframe request
// from the overflow side reaches the publisher's producer, data reaches everyone, and a SIGKILL of
// the overflow worker ends only the receivers on it. Closing a producer and the room cascades
// through the pipe.
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant, RemoteTrack } from '../../src/client/node.ts';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { writeRtpInputSdp } from '../../src/media/sdp.ts';
import type { Gateway } from '../../src/main.ts';
import { startTestGateway } from '../helpers/gateway.ts';
import { freePort, isAlive, waitFor, waitForBound } from '../helpers/net.ts';
import { join, nextEvent } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
const people: NodeParticipant[] = [];
const ROOM = 'spread';

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_RTC_WORKERS: '2', ROOMGATE_RTC_CONSUMERS_PER_WORKER: '2' });
});

afterAll(async () => {
  await Promise.all(people.map((p) => p.leave().catch(() => undefined)));
  await gw?.close();
  await redis?.stop();
});

/** Joins and waits until both of the publisher's tracks are subscribed (the server's consumers exist). */
async function subscriber(identity: string): Promise<{ p: NodeParticipant; video: RemoteTrack; audio: RemoteTrack }> {
  const p = await join(gw.url, ROOM, identity);
  people.push(p);
  const tracks = await waitFor(() => {
    const video = p.remoteTracks.find((t) => t.kind === 'video');
    const audio = p.remoteTracks.find((t) => t.kind === 'audio');
    return video && audio ? { video, audio } : undefined;
  }, 15_000, `${identity} subscribed to video and audio`);
  return { p, ...tracks };
}

/** Counts RTP packets a remote track delivers. */
function counter(t: RemoteTrack): { readonly n: number } {
  const c = { n: 0 };
  t.track.onReceiveRtp.subscribe(() => c.n++);
  return c;
}

/**
 * What a subscriber receives, as FFmpeg gets it: the track's RTP (SRTP already removed by the
 * client) forwarded to an RTP/SDP input and copied into Matroska, then decoded by ffprobe.
 * Returns the decoded frames per kind.
 */
async function decodeFrames(video: RemoteTrack, audio: RemoteTrack, seconds: number): Promise<{ video: number; audio: number }> {
  const pts = await Promise.all(
    [video, audio].map(
      (t) =>
        new Promise<number>((resolve) => {
          const sub = t.track.onReceiveRtp.subscribe((rtp) => {
            sub.unSubscribe();
            resolve(rtp.header.payloadType);
          });
        }),
    ),
  );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-spread-'));
  const out = path.join(dir, 'out.mkv');
  const ports = [await freePort(), await freePort()];
  const sdp = path.join(dir, 'in.sdp');
  fs.writeFileSync(
    sdp,
    writeRtpInputSdp([
      { kind: 'video', port: ports[0]!, rtcpPort: ports[0]! + 1, payloadType: pts[0]!, mimeType: 'video/VP8', clockRate: 90000 },
      { kind: 'audio', port: ports[1]!, rtcpPort: ports[1]! + 1, payloadType: pts[1]!, mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
    ]),
  );
  const ff = launchFfmpeg(['-protocol_whitelist', 'file,udp,rtp', '-i', sdp, '-t', String(seconds), '-c', 'copy', '-y', out]);
  const sock = dgram.createSocket('udp4');
  const subs: { unSubscribe(): void }[] = [];
  try {
    for (const port of ports) await waitForBound(port, 'udp', ff);
    [video, audio].forEach((t, i) => subs.push(t.track.onReceiveRtp.subscribe((rtp) => sock.send(rtp.serialize(), ports[i]!, '127.0.0.1'))));
    const timer = setTimeout(() => void ff.stop().catch(() => undefined), (seconds + 20) * 1000);
    const code = await ff.exited;
    clearTimeout(timer);
    expect(code, ff.stderrTail()).toBe(0);
  } finally {
    for (const s of subs) s.unSubscribe();
    sock.close();
  }
  const res = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-show_streams', '-of', 'json', out], { encoding: 'utf8' });
  expect(res.status, res.stderr).toBe(0);
  const streams = (JSON.parse(res.stdout) as { streams: { codec_type: string; nb_read_frames?: string }[] }).streams;
  const frames = (kind: string) => Number(streams.find((s) => s.codec_type === kind)?.nb_read_frames ?? 0);
  fs.rmSync(dir, { recursive: true, force: true });
  return { video: frames('video'), audio: frames('audio') };
}

describe('a room across mediasoup workers', () => {
  it('places subscribers past the budget on another worker; all decode; that worker dying ends only its subscribers', async () => {
    const pub = await join(gw.url, ROOM, 'pub');
    people.push(pub);
    const video = await pub.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15'] });
    await pub.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const room = gw.rooms.liveRoom(ROOM)!;
    const home = room.workerPidForTesting!;
    expect(gw.mediaWorkerPids).toContain(home);
    const other = gw.mediaWorkerPids.find((pid) => pid !== home)!;

    // One at a time: placement looks at the consumers that exist when the receive transport is made.
    const a = await subscriber('a');
    const b = await subscriber('b');
    const c = await subscriber('c');
    const placed = room.receiverWorkersForTesting();
    expect(placed.get('a')).toBe(home);
    expect(placed.get('b')).toBe(other);
    expect(placed.get('c')).toBe(other);

    // Every subscriber decodes both tracks (all at once: one recorder each).
    const decoded = await Promise.all([a, b, c].map((s) => decodeFrames(s.video, s.audio, 4)));
    for (const [i, d] of decoded.entries()) {
      expect(d.video, `video frames decoded at ${'abc'[i]}`).toBeGreaterThanOrEqual(15);
      expect(d.audio, `audio frames decoded at ${'abc'[i]}`).toBeGreaterThanOrEqual(100);
    }

    // A keyframe request from the overflow side crosses the pipe: b re-subscribes (a new consumer on
    // the overflow router, resumed with a keyframe request) and the publisher's producer sends a PLI.
    const producer = room.participant('pub').track(video.trackSid)!.producer;
    let plis = 0;
    producer.on('trace', (trace) => {
      if (trace.type === 'pli') plis++;
    });
    await producer.enableTraceEvent(['pli']);
    const again = nextEvent(b.p, 'trackSubscribed', (t) => t.kind === 'video', 15_000);
    await gw.rooms.updateSubscriptions(ROOM, 'b', [video.trackSid], false);
    await gw.rooms.updateSubscriptions(ROOM, 'b', [video.trackSid], true);
    const [resubscribed] = await again;
    await waitFor(() => plis > 0 || undefined, 10_000, 'a PLI at the publisher after the overflow consumer resumed');
    const after = counter(resubscribed);
    await waitFor(() => after.n > 20 || undefined, 10_000, 'video at b after re-subscribing');

    // Active speakers are measured on the room's Router and told to everyone, wherever they receive.
    await waitFor(() => c.p.activeSpeakers.some((s) => s.identity === 'pub') || undefined, 10_000, 'pub among the active speakers at c');

    // Data from the publisher reaches receivers on both workers (the relay has a side on each router).
    await Promise.all([a.p.dataReady, b.p.dataReady, c.p.dataReady]);
    const got = [a, b, c].map((s) => nextEvent(s.p, 'dataReceived'));
    await pub.publishData(new TextEncoder().encode('to both workers'));
    for (const [m] of await Promise.all(got)) expect(new TextDecoder().decode(m.payload)).toBe('to both workers');

    // The overflow worker dies: b and c are told MEDIA_FAILURE; the room, pub and a go on.
    const bLeft = nextEvent(b.p, 'disconnected', () => true, 15_000);
    const cLeft = nextEvent(c.p, 'disconnected', () => true, 15_000);
    const aVideo = counter(a.video);
    process.kill(other, 'SIGKILL');
    expect((await bLeft)[0]).toBe('MEDIA_FAILURE');
    expect((await cLeft)[0]).toBe('MEDIA_FAILURE');
    const since = aVideo.n;
    await waitFor(() => aVideo.n > since + 30 || undefined, 10_000, 'video at a after the overflow worker died');
    expect(gw.rooms.liveRoom(ROOM)).toBe(room);
    expect(room.participants().map((p) => p.identity).sort()).toEqual(['a', 'pub']);
    expect(isAlive(home)).toBe(true);

    // Rejoining after the pool replaced the worker: b lands on the new worker and receives again.
    const replaced = await waitFor(() => gw.mediaWorkerPids.find((pid) => pid !== home && pid !== other), 15_000, 'a replacement worker');
    const b2 = await subscriber('b');
    expect(room.receiverWorkersForTesting().get('b')).toBe(replaced);
    const b2Video = counter(b2.video);
    await waitFor(() => b2Video.n > 30 || undefined, 10_000, 'video at the rejoined b');

    // A producer closed takes its pipe and the consumers on the overflow router with it.
    const unsubscribed = [a.p, b2.p].map((p) => nextEvent(p, 'trackUnsubscribed', (sid) => sid === video.trackSid, 15_000));
    await video.stop();
    await video.unpublish();
    await Promise.all(unsubscribed);

    // Deleting the room closes its overflow routers too.
    const overflow = room.overflowRoutersForTesting;
    expect(overflow).toHaveLength(1);
    await gw.rooms.deleteRoom(ROOM);
    expect(room.closed).toBe(true);
    expect(overflow.every((r) => r.closed)).toBe(true);
  }, 90_000);
});
