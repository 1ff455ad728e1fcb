// RTMP ingest figures: (a) glass-to-glass latency by the flash method, (b) CPU of one ingest
// pipeline (passthrough and transcode), (c) concurrent passthrough ingests before frames drop.
// The gateway runs in this process; publishers and decoders are FFmpeg children.
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { IngressState_Status, IngressVideoEncodingPreset, IngressVideoOptions } from '@livekit/protocol';
import { IngressClient, IngressInput, type IngressInfo } from 'livekit-server-sdk';
import type { types } from 'mediasoup';
import { type Gateway } from '../src/main.ts';
import { launchFfmpeg, runningFfmpegPids, type FfmpegProcess } from '../src/media/ffmpeg.ts';
import { freePort, waitFor } from '../test/helpers/net.ts';
import { cpuSeconds } from './fanout.ts';
import { BENCH_KEY, BENCH_SECRET, startBenchGateway } from './gateway.ts';

export interface IngestFigures {
  latency: { samples: number; p50: number; p95: number; min: number; max: number };
  cpu: { mode: string; gateway: number; pipeline: number; worker: number; total: number }[];
  concurrency: { streams: number; cpuTotal: number; publishersCpu: number; minFpsRatio: number; medianFpsRatio: number }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function clip(): Promise<string> {
  const file = path.join(os.tmpdir(), 'roomgate-bench-720p30-nob-aac-60s.flv');
  if (fs.existsSync(file)) return file;
  const ff = launchFfmpeg([
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', '60',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '0', '-g', '60', '-b:v', '2M', '-maxrate', '2M', '-bufsize', '1M', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '128k', '-y', `${file}.tmp.flv`,
  ]);
  if ((await ff.exited) !== 0) throw new Error(`could not encode the bench clip: ${ff.stderrTail()}`);
  fs.renameSync(`${file}.tmp.flv`, file);
  return file;
}

/** Decodes a room track in an FFmpeg child and hands the mean luma of each frame to `onFrame`. */
async function lumaWatcher(router: types.Router, producer: types.Producer, onFrame: (luma: number) => void) {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  sock.on('message', (m) => onFrame(m.reduce((a, b) => a + b, 0) / m.length));
  const port = await freePort();
  const t = await router.createPlainTransport({ listenIp: { ip: '127.0.0.1' }, rtcpMux: false, comedia: false });
  await t.connect({ ip: '127.0.0.1', port, rtcpPort: port + 1 });
  const c = await t.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities, paused: true });
  const codec = c.rtpParameters.codecs[0]!;
  const sdpFile = path.join(os.tmpdir(), `roomgate-bench-${process.pid}-${port}.sdp`);
  fs.writeFileSync(sdpFile, ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=watch', 'c=IN IP4 127.0.0.1', 't=0 0',
    `m=video ${port} RTP/AVP ${codec.payloadType}`, `a=rtpmap:${codec.payloadType} ${codec.mimeType.split('/')[1]}/90000`,
    ...(codec.mimeType === 'video/H264' ? [`a=fmtp:${codec.payloadType} packetization-mode=1`] : []), ''].join('\r\n'));
  const ff = launchFfmpeg([
    // One decoder thread: frame threading would hold each picture back by a frame per extra thread
    // (about 67 ms here), hiding the pipeline's own latency behind the decoder's.
    '-protocol_whitelist', 'file,udp,rtp', '-fflags', 'nobuffer', '-flags', 'low_delay', '-probesize', '32', '-analyzeduration', '0',
    '-threads', '1', '-i', sdpFile, '-vf', 'scale=16:16,format=gray', '-f', 'rawvideo', '-flush_packets', '1', `udp://127.0.0.1:${(sock.address()).port}?pkt_size=1316`,
  ]);
  await sleep(500);
  await c.resume();
  await c.requestKeyFrame();
  return {
    async stop() {
      await ff.stop();
      t.close();
      sock.close();
      fs.rmSync(sdpFile, { force: true });
    },
  };
}

const FLASH_W = 640;
const FLASH_H = 360;
/** Raw gray frames on stdin at 30 fps: what a flash publisher's encoder reads. */
export const FLASH_INPUT = ['-f', 'rawvideo', '-pix_fmt', 'gray', '-s', `${FLASH_W}x${FLASH_H}`, '-r', '30', '-i', 'pipe:0'];

/**
 * Glass-to-glass by the flash method: this process draws black frames with a white flash every
 * 0.9–1.4 s (not locked to the keyframe interval) and hands them to the publisher's encoder via
 * `write`; a subscriber decodes the room's track and reports when the picture turns bright. The
 * instant a white frame is handed to the encoder is "glass" on the sending side; the decoded frame
 * is "glass" on the receiving side (display refresh is not included).
 */
export async function flashLatency(
  gw: Gateway,
  room: string,
  identity: string,
  write: (frame: Buffer) => void,
  flashes = 25,
): Promise<{ samples: number; p50: number; p95: number; min: number; max: number }> {
  const black = Buffer.alloc(FLASH_W * FLASH_H, 16);
  const white = Buffer.alloc(FLASH_W * FLASH_H, 235);
  let flashLeft = 0;
  let nextFlashAt = 0;
  const flashTimes: number[] = [];
  const timer = setInterval(() => {
    const now = performance.now();
    if (flashLeft === 0 && nextFlashAt > 0 && now >= nextFlashAt) {
      flashLeft = 3;
      flashTimes.push(now);
      nextFlashAt = now + 900 + Math.random() * 500;
    }
    write(flashLeft > 0 ? white : black);
    if (flashLeft > 0) flashLeft--;
  }, 1000 / 30);
  try {
    const track = await waitFor(() => gw.rooms.liveRoom(room)?.participant(identity).tracks.find((t) => t.producer.kind === 'video'), 15_000, 'flash track');
    const live = gw.rooms.liveRoom(room)!;
    const seen: number[] = [];
    let bright = false;
    const watcher = await lumaWatcher(live.routerForTesting, track.producer, (luma) => {
      if (!bright && luma > 128) seen.push(performance.now());
      bright = luma > 128;
    });
    await sleep(2500); // the decoder has had a keyframe
    nextFlashAt = performance.now();
    await waitFor(() => (flashTimes.length > flashes ? true : undefined), 60_000, 'flashes');
    await sleep(1500);
    await watcher.stop();
    const samples: number[] = [];
    for (const t of flashTimes) {
      const d = seen.find((s) => s >= t && s - t < 800);
      if (d !== undefined) samples.push(d - t);
    }
    samples.sort((a, b) => a - b);
    const pct = (p: number) => samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))] ?? NaN;
    return { samples: samples.length, p50: pct(50), p95: pct(95), min: samples[0] ?? NaN, max: samples[samples.length - 1] ?? NaN };
  } finally {
    clearInterval(timer);
  }
}

async function latency(gw: Gateway, client: IngressClient) {
  const info = await client.createIngress(IngressInput.RTMP_INPUT, { roomName: 'bench-flash', participantIdentity: 'flash' });
  const pub = launchFfmpeg([
    ...FLASH_INPUT,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-bf', '0', '-g', '30', '-pix_fmt', 'yuv420p',
    '-f', 'flv', `rtmp://127.0.0.1:${gw.rtmpPort}/live/${info.streamKey}`,
  ], { stdin: 'media' });
  try {
    return await flashLatency(gw, 'bench-flash', 'flash', (f) => pub.write(f));
  } finally {
    await pub.stop();
    await client.deleteIngress(info.ingressId);
  }
}

function pushClip(file: string, gw: Gateway, key: string): FfmpegProcess {
  return launchFfmpeg(['-re', '-i', file, '-c', 'copy', '-f', 'flv', `rtmp://127.0.0.1:${gw.rtmpPort}/live/${key}`]);
}

const pipelinePids = (exclude: Set<number>) => runningFfmpegPids().filter((p) => !exclude.has(p));

async function cpuOf(gw: Gateway, client: IngressClient, file: string, mode: 'passthrough' | 'transcode (3 layers)' | 'transcode (1 layer)', windowS = 10) {
  const oneLayer = new IngressVideoOptions({ encodingOptions: { case: 'preset', value: IngressVideoEncodingPreset.H264_720P_30FPS_1_LAYER } });
  const extra = mode === 'passthrough' ? {} : mode === 'transcode (3 layers)' ? { enableTranscoding: true } : { enableTranscoding: true, video: oneLayer };
  const info = await client.createIngress(IngressInput.RTMP_INPUT, { roomName: `bench-cpu-${mode.length}`, participantIdentity: 'cpu', ...extra });
  const pub = pushClip(file, gw, info.streamKey);
  try {
    await waitFor(async () => ((await client.listIngress({ ingressId: info.ingressId }))[0]?.state?.status === IngressState_Status.ENDPOINT_PUBLISHING ? true : undefined), 20_000, 'publishing');
    await sleep(3000);
    const pipes = pipelinePids(new Set([pub.pid]));
    const [worker] = gw.mediaWorkerPids;
    const before = { g: cpuSeconds(process.pid), p: pipes.reduce((a, p) => a + cpuSeconds(p), 0), w: cpuSeconds(worker!) };
    await sleep(windowS * 1000);
    const after = { g: cpuSeconds(process.pid), p: pipes.reduce((a, p) => a + cpuSeconds(p), 0), w: cpuSeconds(worker!) };
    const gateway = (after.g - before.g) / windowS;
    const pipeline = (after.p - before.p) / windowS;
    const w = (after.w - before.w) / windowS;
    return { mode, gateway, pipeline, worker: w, total: gateway + pipeline + w };
  } finally {
    await pub.stop();
    await client.deleteIngress(info.ingressId);
  }
}

async function concurrency(gw: Gateway, client: IngressClient, file: string, n: number, windowS = 8) {
  const infos: IngressInfo[] = [];
  for (let i = 0; i < n; i++) infos.push(await client.createIngress(IngressInput.RTMP_INPUT, { roomName: `bench-many-${i}`, participantIdentity: 'cam' }));
  const pubs = infos.map((info) => pushClip(file, gw, info.streamKey));
  try {
    await waitFor(async () => {
      const all = await client.listIngress({});
      return infos.every((i) => all.find((a) => a.ingressId === i.ingressId)?.state?.status === IngressState_Status.ENDPOINT_PUBLISHING) ? true : undefined;
    }, 60_000, `${n} publishing`);
    await sleep(3000);
    const producers = infos.map((_, i) => gw.rooms.liveRoom(`bench-many-${i}`)!.participant('cam').tracks.find((t) => t.producer.kind === 'video')!.producer);
    const frames = async () => Promise.all(producers.map(async (p) => (await p.getStats())[0]?.packetCount ?? 0));
    const pubPids = new Set(pubs.map((p) => p.pid));
    const pipes = pipelinePids(pubPids);
    const [worker] = gw.mediaWorkerPids;
    const cpu = () => ({
      gw: cpuSeconds(process.pid) + pipes.reduce((a, p) => a + safeCpu(p), 0) + cpuSeconds(worker!),
      pubs: [...pubPids].reduce((a, p) => a + safeCpu(p), 0),
    });
    const c0 = cpu();
    const f0 = await frames();
    await sleep(windowS * 1000);
    const f1 = await frames();
    const c1 = cpu();
    // Packets per second per stream, against what one stream alone carries (the clip's rate).
    const pps = f1.map((v, i) => (v - f0[i]!) / windowS).sort((a, b) => a - b);
    return { pps, cpuTotal: (c1.gw - c0.gw) / windowS, publishersCpu: (c1.pubs - c0.pubs) / windowS };
  } finally {
    await Promise.all(pubs.map((p) => p.stop()));
    for (const info of infos) await client.deleteIngress(info.ingressId);
  }
}

function safeCpu(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return 0;
  }
}

export async function runIngest(steps = (process.env.INGEST_STEPS ?? "10,20,40,60").split(",").map(Number)): Promise<IngestFigures> {
  const file = await clip();
  const bench = await startBenchGateway({ ROOMGATE_RTMP_ENABLED: 'true', ROOMGATE_RTMP_PORT: String(await freePort()) });
  const { gw } = bench;
  const client = new IngressClient(gw.url, BENCH_KEY, BENCH_SECRET);
  try {
    const lat = await latency(gw, client);
    const cpu = [];
    for (const mode of ['passthrough', 'transcode (1 layer)', 'transcode (3 layers)'] as const) cpu.push(await cpuOf(gw, client, file, mode));
    const base = await concurrency(gw, client, file, 1);
    const baseline = base.pps[0]!;
    const conc = [];
    for (const n of steps) {
      const r = await concurrency(gw, client, file, n);
      conc.push({
        streams: n,
        cpuTotal: r.cpuTotal,
        publishersCpu: r.publishersCpu,
        minFpsRatio: r.pps[0]! / baseline,
        medianFpsRatio: r.pps[Math.floor(r.pps.length / 2)]! / baseline,
      });
      if (r.pps[0]! / baseline < 0.9) break; // frames drop: the next step only adds load
    }
    return { latency: lat, cpu, concurrency: conc };
  } finally {
    await bench.close();
  }
}
