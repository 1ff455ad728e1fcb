// Fan-out: one 720p30 H.264 publisher, N subscribers on ONE mediasoup worker, or (mode 'pipe') on
// two workers: the room's receiver placement puts subscribers past a small consumer budget on an
// overflow router on the second worker, fed by pipeToRouter. Subscribers are SRTP PlainTransport
// consumers (the same encrypt-and-send work per subscriber as WebRTC, without running N WebRTC
// stacks on this 2-core machine); a separate receiver process counts every packet per SSRC.
// Reports CPU of the worker(s), the gateway process and the receiver, and loss.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { types } from 'mediasoup';
import { launchFfmpeg, type FfmpegProcess } from '../src/media/ffmpeg.ts';
import { freePort } from '../test/helpers/net.ts';
import { startBenchGateway } from './gateway.ts';

export type FanoutMode = 'one' | 'pipe';

/** Consumer budget per worker in 'pipe' mode: past it, subscribers spread over both workers. */
const PIPE_BUDGET = 25;

export interface FanoutRow {
  mode: FanoutMode;
  subscribers: number;
  /** Subscribers whose consumer is on the second worker (0 with one worker). */
  onSecondWorker: number;
  /** CPU of all mediasoup workers together (cores). */
  workerCpu: number;
  gatewayCpu: number;
  receiverCpu: number;
  producerPps: number;
  sentPerSubscriberPps: number;
  /** Packets sent by the SFU but not received (loopback UDP into the receiver process). */
  lossPct: number;
  /** Publisher packets the worker did not take in, against the smallest step's rate (overload). */
  ingestLossPct: number;
  /** Cores busy on the whole machine in the window (this bench and everything else running). */
  machineBusy: number;
}

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds the whole machine has been busy so far (all cores, everything but idle and iowait), from /proc/stat. */
export function machineBusySeconds(): number {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0); // user .. steal (guest is inside user)
  return (total - cpu[3]! - cpu[4]!) / TICKS;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime + stime
}

/** The publisher's clip (720p30 H.264 baseline, 2 Mb/s, 20 s), encoded once; Janus's side plays the same file. */
export async function clip(): Promise<string> {
  // Played once per measurement window; FFmpeg's -stream_loop with -re and -c copy stalls at the loop point.
  const file = path.join(os.tmpdir(), 'roomgate-bench-720p30-h264-20s.mp4');
  if (fs.existsSync(file)) return file;
  const ff = launchFfmpeg([
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-t', '20',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'baseline', '-bf', '0', '-g', '30',
    '-b:v', '2M', '-maxrate', '2M', '-bufsize', '1M', '-pix_fmt', 'yuv420p', '-y', file,
  ]);
  if ((await ff.exited) !== 0) throw new Error(`could not encode the bench clip: ${ff.stderrTail()}`);
  return file;
}

const RECEIVER = `
const dgram = require('node:dgram');
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 * 1024 * 1024 });
const counts = new Map();
sock.on('message', (m) => { if (m.length >= 12) { const s = m.readUInt32BE(8); counts.set(s, (counts.get(s) || 0) + 1); } });
sock.bind(0, '127.0.0.1', () => process.send({ port: sock.address().port }));
process.on('message', (msg) => { if (msg === 'counts') process.send({ counts: [...counts] }); if (msg === 'reset') counts.clear(); });
`;

export async function runFanout(steps = [50, 100, 200, 500], windowS = 8, mode: FanoutMode = 'one'): Promise<FanoutRow[]> {
  const file = await clip();
  const bench = await startBenchGateway({
    ROOMGATE_RTC_MIN_PORT: '46000',
    ROOMGATE_RTC_MAX_PORT: '47999',
    ...(mode === 'pipe' ? { ROOMGATE_RTC_WORKERS: '2', ROOMGATE_RTC_CONSUMERS_PER_WORKER: String(PIPE_BUDGET) } : {}),
  });
  const { gw } = bench;
  const receiverFile = path.join(os.tmpdir(), `roomgate-receiver-${process.pid}.cjs`);
  fs.writeFileSync(receiverFile, RECEIVER);
  const receiver: ChildProcess = fork(receiverFile, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const ask = <T>(msg: string): Promise<T> =>
    new Promise((resolve) => {
      receiver.once('message', (m) => resolve(m as T));
      if (msg) receiver.send(msg);
    });
  const { port: receiverPort } = await ask<{ port: number }>('');
  const rows: FanoutRow[] = [];
  let ff: FfmpegProcess | undefined;
  try {
    await gw.rooms.createRoom({ name: 'fanout', emptyTimeout: 3600 });
    const room = gw.rooms.liveRoom('fanout')!;
    const router = room.routerForTesting;
    const ingest = await router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: true });
    const producer = await ingest.produce({
      kind: 'video',
      rtpParameters: {
        codecs: [{ mimeType: 'video/H264', payloadType: 102, clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f' } }],
        encodings: [{ ssrc: 11111111 }],
      },
    });
    // comedia locks onto the first sender's address: every FFmpeg run sends from the same port.
    const sourcePort = await freePort();
    const consumers: types.Consumer[] = [];
    let onSecond = 0;
    const workerPids = gw.mediaWorkerPids;
    const workerCpu = () => workerPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    for (const n of steps) {
      while (consumers.length < n) {
        const batch = Math.min(25, n - consumers.length);
        // One placement per batch: a batch's consumers do not exist yet when it is decided.
        const target = mode === 'pipe' ? await room.receiverRouterForTesting(producer) : router;
        if (target !== router) onSecond += batch;
        const created = await Promise.all(
          Array.from({ length: batch }, async () => {
            const t = await target.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: false, enableSrtp: true });
            await t.connect({
              ip: '127.0.0.1',
              port: receiverPort,
              srtpParameters: { cryptoSuite: 'AES_CM_128_HMAC_SHA1_80', keyBase64: randomBytes(30).toString('base64') },
            });
            return t.consume({ producerId: producer.id, rtpCapabilities: target.rtpCapabilities });
          }),
        );
        consumers.push(...created);
      }
      ff = launchFfmpeg([
        '-re', '-i', file, '-an', '-c:v', 'copy', '-bsf:v', 'h264_mp4toannexb',
        '-payload_type', '102', '-ssrc', '11111111', '-f', 'rtp', `rtp://127.0.0.1:${ingest.tuple.localPort}?pkt_size=1200&localrtpport=${sourcePort}&localrtcpport=${sourcePort + 1}`,
      ]);
      await new Promise((r) => setTimeout(r, 2000)); // the first keyframe reached every consumer
      const packets = async () => {
        const [p] = await producer.getStats();
        const sent = await Promise.all(consumers.map(async (c) => (await c.getStats()).find((s) => s.type === 'outbound-rtp')?.packetCount ?? 0));
        return { produced: p?.packetCount ?? 0, sent };
      };
      receiver.send('reset'); // IPC keeps order: counting restarts before the window opens
      const before = await packets();
      const cpu0 = { w: workerCpu(), g: cpuSeconds(process.pid), r: cpuSeconds(receiver.pid!), m: machineBusySeconds() };
      await new Promise((r) => setTimeout(r, windowS * 1000));
      const cpu1 = { w: workerCpu(), g: cpuSeconds(process.pid), r: cpuSeconds(receiver.pid!), m: machineBusySeconds() };
      const after = await packets();
      await new Promise((r) => setTimeout(r, 300)); // in-flight packets land
      const { counts } = await ask<{ counts: [number, number][] }>('counts');
      await ff.stop();
      ff = undefined;
      const produced = after.produced - before.produced;
      const sent = after.sent.reduce((a, b, i) => a + b - before.sent[i]!, 0);
      const received = counts.reduce((a, [, c]) => a + c, 0);
      rows.push({
        mode,
        subscribers: n,
        onSecondWorker: onSecond,
        workerCpu: (cpu1.w - cpu0.w) / windowS,
        gatewayCpu: (cpu1.g - cpu0.g) / windowS,
        receiverCpu: (cpu1.r - cpu0.r) / windowS,
        producerPps: produced / windowS,
        sentPerSubscriberPps: sent / n / windowS,
        lossPct: sent > 0 ? Math.max(0, (1 - received / sent) * 100) : 100,
        ingestLossPct: rows.length === 0 ? 0 : Math.max(0, (1 - produced / windowS / rows[0]!.producerPps) * 100),
        machineBusy: (cpu1.m - cpu0.m) / windowS,
      });
    }
  } catch (err) {
    // A step the machine cannot hold (e.g. the saturated worker times out getStats) ends the run
    // with the steps it did hold, said on stderr, so the suites after it still run.
    if (rows.length === 0) throw err;
    console.error(`fanout (${mode}): step ${steps[rows.length]} failed, later steps skipped: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await ff?.stop();
    receiver.kill();
    fs.rmSync(receiverFile, { force: true });
    await bench.close();
  }
  return rows;
}
