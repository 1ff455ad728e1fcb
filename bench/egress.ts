// npm run bench -- egress: StartEgress → first RTMP byte at the destination (goal ≤ 1.0 s), CPU of
// a track egress (goal ≤ 0.005 core) and of a 720p participant egress (passthrough and H.264
// transcode). Gateway and worker run in this process; CPU is that of the egress FFmpeg processes.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DirectFileOutput, EgressClient, EgressStatus, EncodedFileOutput, EncodingOptions, StreamOutput } from 'livekit-server-sdk';
import { loadConfig } from '../src/config.ts';
import { startEgressWorker } from '../src/egress/worker/startWorker.ts';
import { runningFfmpegPids } from '../src/media/ffmpeg.ts';
import { startGateway } from '../src/main.ts';
import { cpuSeconds } from './fanout.ts';
import { freePort, waitFor } from '../test/helpers/net.ts';
import { join } from '../test/helpers/participants.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { API_KEY, API_SECRET } from '../test/helpers/gateway.ts';
import type { Recorder } from './gateway.ts';

/** A TCP listener standing in for an RTMP server: notes when the first byte arrives, then holds the socket. */
export async function firstByteSink(): Promise<{ url: string; first: Promise<number>; close(): void }> {
  let resolve!: (t: number) => void;
  const first = new Promise<number>((r) => (resolve = r));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.once('data', () => resolve(performance.now()));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `rtmp://127.0.0.1:${port}/live/bench-key`,
    first,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

async function egressCpu(pidsBefore: Set<number>, seconds: number): Promise<{ cores: number; processes: number }> {
  const pids = runningFfmpegPids().filter((p) => !pidsBefore.has(p));
  const c0 = pids.map((p) => cpuSeconds(p));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const used = pids.reduce((sum, p, i) => sum + (fs.existsSync(`/proc/${p}`) ? cpuSeconds(p) - c0[i]! : 0), 0);
  return { cores: used / ((performance.now() - t0) / 1000), processes: pids.length };
}

export async function runEgress(record: Recorder): Promise<void> {
  const redis = await startRedis();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-bench-egress-'));
  const config = loadConfig({
    env: {
      ROOMGATE_PORT: String(await freePort()),
      ROOMGATE_REDIS_URL: redis.url,
      ROOMGATE_RTMP_ENABLED: 'false',
      ROOMGATE_EGRESS_WORKER: 'false',
      ROOMGATE_EGRESS_MAX_CPU: '16',
      ROOMGATE_DATA_DIR: dataDir,
      ROOMGATE_LOG_LEVEL: 'silent',
      ROOMGATE_RTC_WORKERS: '1',
      ROOMGATE_API_KEY: API_KEY,
      ROOMGATE_API_SECRET: API_SECRET,
    },
  });
  const gw = await startGateway(config);
  const worker = await startEgressWorker(config, { gatewayUrl: gw.url });
  const egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  const pub = await join(gw.url, 'bench-egress', 'pub');
  try {
    const video = await pub.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'H264', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30'] });
    const audio = await pub.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const publisherPids = new Set(runningFfmpegPids());
    const active = (id: string) => waitFor(async () => ((await egress.listEgress({ egressId: id }))[0]?.status === EgressStatus.EGRESS_ACTIVE ? true : undefined), 30_000, 'ACTIVE');
    const ended = (id: string) => waitFor(async () => {
      const s = (await egress.listEgress({ egressId: id }))[0]?.status;
      return s !== undefined && s >= EgressStatus.EGRESS_COMPLETE ? true : undefined;
    }, 30_000, 'ended');

    // 1. StartEgress → first byte at the RTMP destination (passthrough: no encoder delay). The
    // encoder starts at the publisher's next keyframe: `pub` (FFmpeg behind werift) ignores
    // keyframe requests and sends one a second; `quick` sends one every 0.2 s, which bounds what a
    // publisher answering PLI (a browser) gives.
    const quick = await join(gw.url, 'bench-egress', 'quick');
    await quick.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'H264', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-force_key_frames', 'expr:gte(t,n_forced*0.2)'] });
    await quick.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    for (const [identity, label] of [['quick', 'publisher with a keyframe every 0.2 s'], ['pub', 'publisher with a keyframe every 1 s, no PLI']] as const) {
      const latencies: number[] = [];
      for (let i = 0; i < 5; i++) {
        const sink = await firstByteSink();
        const t0 = performance.now();
        const info = await egress.startParticipantEgress('bench-egress', identity, { stream: new StreamOutput({ urls: [sink.url] }) });
        latencies.push((await Promise.race([sink.first, new Promise<number>((r) => setTimeout(() => r(Number.NaN), 10_000))])) - t0);
        sink.close(); // the handshake never completes here: end it so the destination gives up at once
        await egress.stopEgress(info.egressId);
        await ended(info.egressId);
      }
      if (process.env.BENCH_DEBUG) console.error('first-byte latencies', identity, latencies);
      latencies.sort((a, b) => a - b);
      record(`egress: StartEgress → first RTMP byte, p50 (5 runs; ${label})`, latencies[2]!, 'ms', `min ${latencies[0]!.toFixed(0)}, max ${latencies[4]!.toFixed(0)}; goal ≤ 1000`);
    }
    await quick.leave();

    // 2. Track egress CPU: 4 at once (audio and 720p H.264 video), FFmpeg -c copy into files.
    const tracks = [];
    for (let i = 0; i < 2; i++) {
      for (const t of [video, audio]) tracks.push(await egress.startTrackEgress('bench-egress', new DirectFileOutput({ filepath: `bench/t${i}-{track_id}` }), t.trackSid));
    }
    for (const t of tracks) await active(t.egressId);
    const trackCpu = await egressCpu(publisherPids, 10);
    record('egress: track egress CPU per track (copy, 720p H.264 / Opus mix)', trackCpu.cores / tracks.length, 'cores', `${tracks.length} tracks, ${trackCpu.processes} FFmpeg; goal ≤ 0.005`);
    for (const t of tracks) await egress.stopEgress(t.egressId);
    for (const t of tracks) await ended(t.egressId);

    // 3. Participant egress CPU, 720p: passthrough (H.264 copy + AAC) and transcode (H264_720P_30).
    for (const [label, opts] of [
      ['passthrough', undefined],
      // Preset H264_720P_30 is the proto default (0) and so indistinguishable from "no options" (passthrough): ask through advanced.
      ['720p30 x264 transcode', { encodingOptions: new EncodingOptions({ width: 1280, height: 720, framerate: 30, videoBitrate: 3000 }) }],
    ] as const) {
      const sink = await firstByteSink();
      const info = await egress.startParticipantEgress('bench-egress', 'pub', { stream: new StreamOutput({ urls: [sink.url] }), file: new EncodedFileOutput({ filepath: `bench/p-${label.split(' ')[0]}` }) }, opts);
      await active(info.egressId);
      await new Promise((r) => setTimeout(r, 2000));
      const cpu = await egressCpu(publisherPids, 10);
      record(`egress: 720p participant egress CPU (${label}, file + 1 RTMP)`, cpu.cores, 'cores', `${cpu.processes} FFmpeg`);
      sink.close();
      await egress.stopEgress(info.egressId);
      await ended(info.egressId);
      if (process.env.BENCH_DEBUG) console.error(label, (await egress.listEgress({ egressId: info.egressId }))[0]?.toJsonString());
    }
  } finally {
    await pub.leave();
    await worker.close();
    await gw.close();
    await redis.stop();
  }
}
