// Recordings of what OBS sends by default: a keyframe every 250 frames (8.3 s) that no keyframe
// request can hurry. An egress started mid-interval must still record from the request on,
// decodable from its first frame: the gateway replays the pictures it kept since the last keyframe.
// A track egress (a copy) starts with them; an encoded one (track composite, re-encoded) decodes
// them and starts at the request, long before the source's next keyframe. On the code before the
// keyframe cache and the worker's RTP gate, the track egress ended ABORTED ("stopped before any
// media was recorded"; FFmpeg's probe dropped the one keyframe it saw); before the encoders were
// fed the kept pictures, the track composite started at the source's next keyframe.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IngressState_Status } from '@livekit/protocol';
import { DirectFileOutput, EgressClient, EncodedFileOutput, EncodingOptions, EgressStatus, IngressClient, IngressInput, type EgressInfo } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import type { FfmpegProcess } from '../../src/media/ffmpeg.ts';
import { sleep } from '../../src/time.ts';
import { egressLookups, inProcessWorker } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { OBS_NO_BFRAMES, obsClip, pushClip } from '../helpers/publishers.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe } from '../helpers/rtpRecorder.ts';

let redis: TestRedis;
let gw: Gateway;
let worker: EgressWorker;
let egress: EgressClient;
let ingress: IngressClient;
let clip: string;
const running = new Set<FfmpegProcess>();
const { info } = egressLookups(() => egress);

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_RTMP_ENABLED: 'true', ROOMGATE_RTMP_PORT: String(await freePort()) });
  // Room for the three egresses of one case at once (the default is 80 % of the cores).
  worker = await inProcessWorker(gw, { ROOMGATE_EGRESS_MAX_CPU: '8' });
  egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  ingress = new IngressClient(gw.url, API_KEY, API_SECRET);
  clip = await obsClip(OBS_NO_BFRAMES);
}, 180_000);

afterAll(async () => {
  await Promise.all([...running].map((f) => f.stop(2000)));
  await worker?.close();
  await gw?.close();
  await redis?.stop();
});

/** Starts the OBS-shaped stream into `room` and waits until its video track is in the room. */
async function streamInto(room: string): Promise<{ videoSid: string; audioSid: string; pushedAt: number; stop: () => Promise<void> }> {
  const info = await ingress.createIngress(IngressInput.RTMP_INPUT, { roomName: room, participantIdentity: 'obs', participantName: 'OBS' });
  const pushedAt = Date.now();
  const ff = pushClip(clip, `rtmp://127.0.0.1:${gw.rtmpPort}/live/${info.streamKey}`);
  running.add(ff);
  const published = await waitFor(async () => {
    const [i] = await ingress.listIngress({ ingressId: info.ingressId });
    return i?.state?.status === IngressState_Status.ENDPOINT_PUBLISHING ? i : undefined;
  }, 60_000, 'ingress PUBLISHING');
  const video = published.state!.tracks.find((t) => t.type === 1);
  const audio = published.state!.tracks.find((t) => t.type === 0);
  expect(video, 'the stream has a video track').toBeDefined();
  expect(audio, 'the stream has an audio track').toBeDefined();
  return {
    videoSid: video!.sid,
    audioSid: audio!.sid,
    pushedAt,
    stop: async () => {
      await ff.stop(2000);
      running.delete(ff);
    },
  };
}

/** Every frame of the file decodes (no decoder complaint at all). */
function decodeErrors(file: string): string {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'null', '-'], { encoding: 'utf8' });
  return `${r.status === 0 ? '' : `exit ${r.status}\n`}${r.stderr.trim()}`;
}

/** Records for `seconds` and checks the file: decodable, and covering the time since the request. */
async function record(start: () => Promise<EgressInfo>, seconds: number, label: string): Promise<{ file: string; coverage: number; ownCoverage: number; firstFrameS: number; startedAtMs: number; stoppedAtMs: number; duration: number }> {
  const requested = Date.now();
  const started = await start();
  await sleep(seconds * 1000);
  const stopAt = Date.now();
  await egress.stopEgress(started.egressId);
  const ended = await waitFor(async () => {
    const i = await info(started.egressId);
    return i && i.status >= EgressStatus.EGRESS_COMPLETE ? i : undefined;
  }, 60_000, `${label} to end`);
  expect(`${EgressStatus[ended.status]} ${ended.error}`, label).toBe(`EGRESS_COMPLETE `);
  const file = ended.fileResults[0]!.location;
  expect(fs.existsSync(file), `${label}: file at ${file}`).toBe(true);
  expect(decodeErrors(file), `${label}: full decode`).toBe('');
  const p = probe(file);
  const video = p.streams.find((s) => s.codec_type === 'video');
  expect(video?.width, `${label}: picture size`).toBeGreaterThan(0);
  const startedAt = Number(ended.startedAt / 1_000_000n);
  const firstFrameS = startedAt / 1000 - requested / 1000;
  // What the file covers of the time since the request (a copy's cached pictures make it > 1), and
  // of the time since its media started (the worker's own start-up, seconds on a starved machine, aside).
  const coverage = p.duration / ((stopAt - requested) / 1000);
  const ownCoverage = p.duration / ((stopAt - Math.max(requested, startedAt)) / 1000);
  // Figures for the README's OBS section (bench/ measures them properly).
  console.info(`[long-gop] ${label}: duration ${p.duration.toFixed(2)} s of ${((stopAt - requested) / 1000).toFixed(2)} s wall (coverage ${(coverage * 100).toFixed(1)} %, of its own time ${(ownCoverage * 100).toFixed(1)} %), started ${firstFrameS.toFixed(2)} s after the request`);
  return { file, coverage, ownCoverage, firstFrameS, startedAtMs: startedAt, stoppedAtMs: stopAt, duration: p.duration };
}



describe('egress of an RTMP stream with an 8.3 s keyframe interval (OBS defaults, B-frames off: passthrough)', () => {
  it('track and track-composite egress record from the request on, decodable from their first frame', async () => {
    const s = await streamInto('obs-long-gop');
    // Mid-interval: the clip's keyframes go every 250 frames from the push on (a little after
    // pushedAt, so the estimate below is early: the checks against it are, if anything, stricter).
    await sleep(1000);
    const interval = (250 / 30) * 1000;
    const requested = Date.now();
    const nextKeyframeAt = s.pushedAt + Math.ceil((requested - s.pushedAt) / interval) * interval;
    const [track, composite] = await Promise.all([
      record(() => egress.startTrackEgress('obs-long-gop', new DirectFileOutput({ filepath: 'long-gop/track.mp4' }), s.videoSid), 10, 'track egress'),
      record(
        () =>
          egress.startTrackCompositeEgress('obs-long-gop', { file: new EncodedFileOutput({ filepath: 'long-gop/composite.mp4' }) }, {
            videoTrackId: s.videoSid,
            audioTrackId: s.audioSid,
            encodingOptions: new EncodingOptions({ width: 640, height: 360, framerate: 15, videoBitrate: 800 }),
          }),
        10,
        'track composite (re-encoded)',
      ),
    ]);
    // The copy starts with the cached pictures (up to one interval before the request).
    expect(track.coverage).toBeGreaterThan(0.9);
    // The encoder starts on the replayed pictures: before the source's next keyframe could have
    // given it one, with more media than a start at that keyframe could hold.
    expect(composite.startedAtMs, 'track composite starts before the source’s next keyframe').toBeLessThan(nextKeyframeAt);
    expect(composite.duration, 'track composite media').toBeGreaterThan((composite.stoppedAtMs - nextKeyframeAt) / 1000);
    await s.stop();
  }, 180_000);
});

afterAll(() => {
  for (const f of fs.readdirSync(os.tmpdir())) if (f.startsWith('roomgate-obs-') && f.endsWith(`.${process.pid}.flv`)) fs.rmSync(path.join(os.tmpdir(), f), { force: true });
});
