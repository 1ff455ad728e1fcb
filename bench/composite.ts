// npm run bench -- composite: a 720p30 `grid` room composite of four participants (issue 6).
//   - StartRoomCompositeEgress → first RTMP byte at the destination (goal ≤ 1.0 s);
//   - CPU of the composite's FFmpeg processes (compositor + file writer + RTMP push; goal ≤ 0.6 core,
//     against 2–6 CPUs for LiveKit's Chrome-based composite);
//   - realtime factor: media duration of the recording / wall time it covers;
//   - A/V offset and drift, by flash + beep: one participant's single FFmpeg draws a white frame and
//     a 1 kHz beep at the same instants (every 2 s); the recording is decoded and each flash is paired
//     with its beep. Offset = beep − flash in the recording (positive: audio late); drift = how the
//     offset moved from the first to the last third of the run.
// BENCH_COMPOSITE_SECONDS sets the recording's length (default 60; the drift goal is over 10 min).
import dgram from 'node:dgram';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { EgressClient, EgressStatus, EncodedFileOutput, StreamOutput, type EgressInfo } from 'livekit-server-sdk';
import { startEgressWorker } from '../src/egress/worker/startWorker.ts';
import { launchFfmpeg, runningFfmpegPids, type FfmpegProcess } from '../src/media/ffmpeg.ts';
import { firstByteSink } from './egress.ts';
import { cpuSeconds } from './fanout.ts';
import { startBenchGateway, type Recorder } from './gateway.ts';
import { API_KEY, API_SECRET } from '../test/helpers/gateway.ts';
import { startRtmpSink } from '../test/helpers/egress.ts';
import { waitFor } from '../test/helpers/net.ts';
import { joinToken } from '../test/helpers/participants.ts';
import { NodeParticipant } from '../src/client/node.ts';

const ROOM = 'bench-composite';
const FLASH_PERIOD_S = 2;
const FLASH_S = 0.2;

/** Flash and beep from ONE FFmpeg (one clock), each sent as RTP to its own published track. */
async function publishFlashBeep(p: NodeParticipant): Promise<FfmpegProcess> {
  const video = await p.publishTrack({ kind: 'video', source: 'camera', codec: 'H264' });
  const audio = await p.publishTrack({ kind: 'audio', source: 'microphone' });
  const socks = await Promise.all(
    [video, audio].map(async (t) => {
      const s = dgram.createSocket('udp4');
      s.on('message', (m) => t.writeRtp(m));
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
      return s;
    }),
  );
  const on = `lt(mod(t\\,${FLASH_PERIOD_S})\\,${FLASH_S})`;
  const ff = launchFfmpeg([
    '-re', '-f', 'lavfi', '-i', `color=c=black:s=640x360:r=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='${on}'`,
    '-re', '-f', 'lavfi', '-i', `sine=frequency=1000:sample_rate=48000:samples_per_frame=480,volume='if(${on},0.8,0)':eval=frame`,
    '-map', '0:v', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-bf', '0', '-g', '30', '-payload_type', '102',
    '-f', 'rtp', `rtp://127.0.0.1:${socks[0]!.address().port}?pkt_size=1200`,
    '-map', '1:a', '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '64k', '-application', 'lowdelay', '-payload_type', '111',
    '-f', 'rtp', `rtp://127.0.0.1:${socks[1]!.address().port}?pkt_size=1200`,
  ]);
  ff.exited.then(() => socks.forEach((s) => s.close())).catch((err: unknown) => console.error('bench: closing the sender sockets failed', err));
  return ff;
}

/** Rising edges of a (time, value) series through the midpoint of its range (or `threshold`). */
export function risingEdges(series: { t: number; v: number }[], threshold?: number, minGapS = 1): number[] {
  if (series.length === 0) return [];
  const values = series.map((s) => s.v);
  const th = threshold ?? (Math.min(...values) + Math.max(...values)) / 2;
  const edges: number[] = [];
  let above = series[0]!.v > th;
  for (const s of series) {
    const now = s.v > th;
    if (now && !above && (edges.length === 0 || s.t - edges.at(-1)! > minGapS)) edges.push(s.t);
    above = now;
  }
  return edges;
}

/** Per-frame tags of a lavfi graph over the file, through ffprobe. */
function lavfiSeries(graph: string, tag: string): { t: number; v: number }[] {
  const res = spawnSync('ffprobe', ['-v', 'error', '-f', 'lavfi', '-i', graph, '-show_entries', `frame=pts_time:frame_tags=${tag}`, '-of', 'csv=p=0'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (res.status !== 0) throw new Error(`ffprobe failed: ${res.stderr}`);
  return res.stdout
    .split('\n')
    .map((l) => l.split(','))
    .filter((p) => p.length >= 2 && p[1] !== '' && p[1] !== '-inf')
    .map((p) => ({ t: Number(p[0]), v: Number(p[1]) }))
    .filter((s) => Number.isFinite(s.t) && Number.isFinite(s.v));
}

/** Offsets beep − flash (ms) in a recording, in order. */
function avOffsets(file: string): { at: number; offsetMs: number }[] {
  const esc = file.replace(/[\\:']/g, (c) => `\\${c}`);
  const flashes = risingEdges(lavfiSeries(`movie='${esc}',signalstats`, 'lavfi.signalstats.YAVG'));
  // 10 ms windows; the other participants' tones are 40 dB below the beep.
  const beeps = risingEdges(lavfiSeries(`amovie='${esc}',asetnsamples=n=480,astats=metadata=1:reset=1`, 'lavfi.astats.Overall.RMS_level'), -30);
  const out: { at: number; offsetMs: number }[] = [];
  for (const f of flashes) {
    const b = beeps.reduce((best, x) => (Math.abs(x - f) < Math.abs(best - f) ? x : best), Number.POSITIVE_INFINITY);
    if (Math.abs(b - f) < FLASH_PERIOD_S / 2) out.push({ at: f, offsetMs: (b - f) * 1000 });
  }
  return out;
}

function mediaDuration(file: string): number {
  const res = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  return Number(res.stdout.trim());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

export async function runComposite(record: Recorder): Promise<void> {
  const seconds = Number(process.env.BENCH_COMPOSITE_SECONDS ?? 60);
  const bench = await startBenchGateway({ ROOMGATE_EGRESS_MAX_CPU: '16', ROOMGATE_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'silent', ROOMGATE_API_KEY: API_KEY, ROOMGATE_API_SECRET: API_SECRET });
  const { gw } = bench;
  const worker = await startEgressWorker(gw.config, { gatewayUrl: gw.url });
  const egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  const people: NodeParticipant[] = [];
  const info = async (id: string): Promise<EgressInfo | undefined> => (await egress.listEgress({ egressId: id }))[0];
  const ended = (id: string) =>
    waitFor(async () => {
      const i = await info(id);
      return i && i.status >= EgressStatus.EGRESS_COMPLETE ? i : undefined;
    }, 60_000, 'egress end');
  try {
    const joinAs = async (room: string, identity: string) => {
      const p = await NodeParticipant.connect(gw.url, await joinToken(room, identity));
      people.push(p);
      return p;
    };
    /** Three camera + tone participants; `keyframeS` adds keyframes that often (a publisher answering PLI at once). */
    const publishThree = async (room: string, keyframeS?: number) => {
      const out: NodeParticipant[] = [];
      for (const [i, tone] of [300, 500, 700].entries()) {
        const p = await joinAs(room, `p${i}`);
        const keys = keyframeS ? ['-force_key_frames', `expr:gte(t,n_forced*${keyframeS})`] : [];
        await p.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'H264', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', ...keys] });
        await p.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', `sine=frequency=${tone}:sample_rate=48000,volume=0.008`] });
        out.push(p);
      }
      return out;
    };

    // 1. StartRoomCompositeEgress → first RTMP byte. The compositor's first frame needs a keyframe
    // from every tile: the bench's FFmpeg publishers ignore keyframe requests (PLI) and send one a
    // second, browsers answer PLI within a round trip. Both are measured; the second with
    // publishers that send a keyframe every 0.2 s, which bounds what PLI-answering ones give.
    const firstByte = async (room: string, label: string) => {
      const latencies: number[] = [];
      for (let i = 0; i < 5; i++) {
        const sink = await firstByteSink();
        const t0 = performance.now();
        const started = await egress.startRoomCompositeEgress(room, { stream: new StreamOutput({ urls: [sink.url] }) }, { layout: 'grid' });
        latencies.push((await Promise.race([sink.first, new Promise<number>((r) => setTimeout(() => r(Number.NaN), 15_000))])) - t0);
        sink.close();
        await egress.stopEgress(started.egressId);
        await ended(started.egressId);
      }
      latencies.sort((a, b) => a - b);
      record(`composite: StartRoomCompositeEgress → first RTMP byte, p50 (5 runs; ${label})`, latencies[2]!, 'ms', `min ${latencies[0]!.toFixed(0)}, max ${latencies[4]!.toFixed(0)}; goal ≤ 1000`);
    };
    const quick = `${ROOM}-pli`;
    await gw.rooms.createRoom({ name: quick });
    const quickPeople = await publishThree(quick, 0.2);
    await new Promise((r) => setTimeout(r, 2000));
    await firstByte(quick, 'publishers with a keyframe every 0.2 s');
    await Promise.all(quickPeople.map((p) => p.leave()));

    await gw.rooms.createRoom({ name: ROOM });
    await publishFlashBeep(await joinAs(ROOM, 'flash'));
    await publishThree(ROOM);
    await new Promise((r) => setTimeout(r, 2000));
    await firstByte(ROOM, 'publishers with a keyframe every 1 s, no PLI');

    // 2. The recording: file + RTMP, CPU measured in steady state, then duration and A/V.
    const sink = await startRtmpSink('bench-composite');
    const before = new Set(runningFfmpegPids());
    const started = await egress.startRoomCompositeEgress(ROOM, { file: new EncodedFileOutput({ filepath: 'bench/composite-{time}' }), stream: new StreamOutput({ urls: [sink.url] }) }, { layout: 'grid' });
    await waitFor(async () => ((await info(started.egressId))?.status === EgressStatus.EGRESS_ACTIVE ? true : undefined), 30_000, 'ACTIVE');
    await new Promise((r) => setTimeout(r, 3000));
    const pids = runningFfmpegPids().filter((p) => !before.has(p));
    const c0 = pids.map((p) => cpuSeconds(p));
    const t0 = performance.now();
    const cpuWindowS = Math.min(20, Math.max(5, seconds - 5));
    await new Promise((r) => setTimeout(r, cpuWindowS * 1000));
    const used = pids.reduce((sum, p, i) => sum + (fs.existsSync(`/proc/${p}`) ? cpuSeconds(p) - c0[i]! : 0), 0);
    const cores = used / ((performance.now() - t0) / 1000);
    record('composite: CPU, 720p30 grid of 4 (compositor + MP4 + RTMP)', cores, 'cores', `${pids.length} FFmpeg; goal ≤ 0.6`);
    await new Promise((r) => setTimeout(r, Math.max(0, seconds - cpuWindowS - 3) * 1000));
    await egress.stopEgress(started.egressId);
    const done = await ended(started.egressId);
    await sink.stop();
    const file = done.fileResults[0]!;
    const wall = Number(file.duration) / 1e9;
    const media = mediaDuration(file.location);
    record('composite: realtime factor (media duration / wall time)', media / wall, 'x', `${media.toFixed(2)} s of media over ${wall.toFixed(2)} s`);
    const offsets = avOffsets(file.location);
    if (offsets.length >= 3) {
      const third = Math.max(1, Math.floor(offsets.length / 3));
      const first = median(offsets.slice(0, third).map((o) => o.offsetMs));
      const last = median(offsets.slice(-third).map((o) => o.offsetMs));
      record('composite: A/V offset (beep − flash), median', median(offsets.map((o) => o.offsetMs)), 'ms', `${offsets.length} flashes, range ${Math.min(...offsets.map((o) => o.offsetMs)).toFixed(0)}…${Math.max(...offsets.map((o) => o.offsetMs)).toFixed(0)}`);
      record(`composite: A/V drift over ${wall.toFixed(0)} s (last third − first third)`, last - first, 'ms', 'goal ≤ 80 over 10 min');
    } else {
      record('composite: A/V offset (beep − flash)', Number.NaN, 'ms', `only ${offsets.length} flash/beep pairs found`);
    }
    if (process.env.BENCH_DEBUG) console.error('offsets', offsets.map((o) => `${o.at.toFixed(1)}:${o.offsetMs.toFixed(0)}`).join(' '));
  } finally {
    await Promise.all(people.map((p) => p.leave().catch(() => undefined)));
    await worker.close();
    await bench.close();
  }
}
