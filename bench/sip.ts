// npm run bench -- sip: phone calls through the gateway (issue 17).
// SIPp places N concurrent calls (signalling only: its scenario's SDP names the bench's RTP socket
// as the phone's media address), each to its own room (a callee dispatch rule). The bench plays
// the phones: it sends each call 20 ms μ-law packets, 1 kHz tone bursts of 200 ms every second, to
// the answer's port, and receives the gateway's G.711 back on that socket. In every room a Node
// participant publishes a 440 Hz Opus voice (one FFmpeg, its packets copied to every room) and
// subscribes to the caller's track. Per step of N calls:
//   - CPU of the gateway: it runs as a child process (`roomgate start`), and the CPU of that process
//     and all its descendants (mediasoup worker, the calls' FFmpeg encoders and decoders) is read
//     from /proc over the window. The bench's own participants are not in it.
//   - latency caller → room: a burst's first μ-law packet leaving the bench's socket → the first
//     Opus packet carrying it (payload above SILENT_OPUS bytes) at the room participant;
//     room → caller: the host's Opus burst onset passing through the bench → the first μ-law packet
//     with sound at the phone's socket.
//   - break-up: at each subscriber (room participant, and phone), packets lost (sequence gaps) and
//     late (arriving more than LATE_MS behind the stream's best transit time, i.e. past what a
//     LATE_MS jitter buffer would hold). A step breaks up when either is above 1 % anywhere.
// BENCH_SIP_STEPS (default 1,4,8,16,32) and BENCH_SIP_SECONDS (window, default 10) size the run;
// the run ends early only when a step collapses (a call unanswered, or over 10 % loss).
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { EgressClient, EgressStatus, EncodedFileOutput, EncodedFileType, RoomServiceClient, SipClient, StreamOutput } from 'livekit-server-sdk';
import { startEgressWorker } from '../src/egress/worker/startWorker.ts';
import { NodeParticipant, type RemoteTrack } from '../src/client/node.ts';
import { launchFfmpeg } from '../src/media/ffmpeg.ts';
import { encodeG711, muLawToLinear } from '../src/sip/g711.ts';
import { API_KEY, API_SECRET } from '../test/helpers/gateway.ts';
import { freePort, waitFor } from '../test/helpers/net.ts';
import { joinToken } from '../test/helpers/participants.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { startRtmpSink } from '../test/helpers/egress.ts';
import { freeUdpPort, muLawTone, runSipp, scenario, toneShare } from '../test/helpers/sip.ts';
import { cpuSeconds } from './fanout.ts';
import { startBenchGateway, type Recorder } from './gateway.ts';

const FRAME_MS = 20;
const BURST_EVERY = 50; // frames: one burst a second
const BURST_FRAMES = 10; // 200 ms of tone
const LATE_MS = 60;
/** Opus frames of digital silence are a few bytes; a 1 kHz tone at 32 kb/s about 80. */
const SILENT_OPUS = 20;
const PREFIX = 'sipbench';

/** Loss and lateness of one received RTP stream. */
class StreamStats {
  received = 0;
  #firstSeq = -1;
  #maxSeq = -1;
  #bestTransit = Number.POSITIVE_INFINITY;
  #transits: number[] = [];
  constructor(readonly clockKhz: number) {}
  add(seq: number, ts: number, at: number): void {
    if (this.#firstSeq < 0) {
      this.#firstSeq = seq;
      this.#maxSeq = seq;
    }
    // Unwrap the 16-bit sequence number around the highest one seen.
    let ext = (this.#maxSeq & ~0xffff) | seq;
    if (ext < this.#maxSeq - 0x8000) ext += 0x10000;
    else if (ext > this.#maxSeq + 0x8000) ext -= 0x10000;
    this.#maxSeq = Math.max(this.#maxSeq, ext);
    this.received++;
    const transit = at - ts / this.clockKhz;
    this.#transits.push(transit);
    this.#bestTransit = Math.min(this.#bestTransit, transit);
  }
  /** Starts a window: what came before does not count. */
  reset(): void {
    this.received = 0;
    this.#firstSeq = -1;
    this.#bestTransit = Number.POSITIVE_INFINITY;
    this.#transits = [];
  }
  get expected(): number {
    return this.#firstSeq < 0 ? 0 : this.#maxSeq - this.#firstSeq + 1;
  }
  get lost(): number {
    return Math.max(0, this.expected - this.received);
  }
  get late(): number {
    // RTP timestamps wrap after 2^32 / 48000 s = 24.8 h: not within a bench window.
    return this.#transits.filter((t) => t - this.#bestTransit > LATE_MS).length;
  }
}

interface Call {
  called: string;
  room: string;
  answerPort: number;
  ssrc: number;
  seq: number;
  /** Send time of the current burst's first packet, until the room hears it. */
  onset: number | undefined;
  /** The host's burst onset as it passed the bench, until the phone hears it. */
  hostOnset: number | undefined;
  toRoom: StreamStats;
  toPhone: StreamStats;
  host?: NodeParticipant;
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** CPU seconds of `root` and every process below it (live ones; /proc). */
function treeCpu(root: number): Map<number, number> {
  const children = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // the process ended while we read
    }
  }
  const out = new Map<number, number>();
  const visit = (pid: number) => {
    try {
      out.set(pid, cpuSeconds(pid));
    } catch {
      return;
    }
    for (const c of children.get(pid) ?? []) visit(c);
  };
  visit(root);
  return out;
}

async function startGatewayProcess(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; stderr(): string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['bin/roomgate.mjs', 'start'], { env: { ...process.env, ...env, ROOMGATE_PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await Promise.race([
    waitFor(async () => ((await fetch(url).catch(() => undefined))?.ok ? true : undefined), 30_000, 'the gateway to answer HTTP'),
    exited.then(() => Promise.reject(new Error(`the gateway exited: ${stderr}`))),
  ]);
  return {
    child,
    url,
    stderr: () => stderr,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** One 20 ms μ-law frame of 1 kHz (8 whole periods of 8 samples repeat seamlessly) and one of silence. */
function frames(): { tone: Buffer; silence: Buffer } {
  const pcm = new Int16Array(160);
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(8000 * Math.sin((2 * Math.PI * 1000 * i) / 8000));
  return { tone: encodeG711(pcm, 'PCMU'), silence: encodeG711(new Int16Array(160), 'PCMU') };
}

interface SipStep {
  calls: number;
  answered: number;
  cores: number;
  perCall: number;
  toRoomMs: number[];
  toPhoneMs: number[];
  worstLossPct: number;
  worstLatePct: number;
  meanLatePct: number;
  /** Frames the bench's phones sent more than 40 ms after their time. */
  benchLatePct: number;
  /** 1-minute load average at the window's start (2 cores, shared). */
  load: number;
}

export async function runSip(record: Recorder): Promise<void> {
  const steps = (process.env.BENCH_SIP_STEPS ?? '1,4,8,16,32').split(',').map(Number);
  const seconds = Number(process.env.BENCH_SIP_SECONDS ?? 10);
  const redis = await startRedis();
  const sipPort = await freeUdpPort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-bench-'));
  const gw = await startGatewayProcess({
    ROOMGATE_REDIS_URL: redis.url,
    ROOMGATE_RTMP_ENABLED: 'false',
    ROOMGATE_EGRESS_WORKER: 'false',
    ROOMGATE_DATA_DIR: dataDir,
    ROOMGATE_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'silent',
    ROOMGATE_RTC_WORKERS: '1',
    ROOMGATE_API_KEY: API_KEY,
    ROOMGATE_API_SECRET: API_SECRET,
    ROOMGATE_SIP_ENABLED: 'true',
    ROOMGATE_SIP_PORT: String(sipPort),
    ROOMGATE_SIP_MAX_CALLS: '256',
  }).catch(async (err: unknown) => {
    await redis.stop();
    throw err;
  });
  const rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
  const sip = new SipClient(gw.url, API_KEY, API_SECRET);
  try {
    const trunk = await sip.createSipInboundTrunk('bench', [], { allowedAddresses: ['127.0.0.0/8'] });
    await sip.createSipDispatchRule({ type: 'callee', roomPrefix: PREFIX }, { trunkIds: [trunk.sipTrunkId] });
  } catch (err) {
    await gw.stop();
    await redis.stop();
    throw err;
  }

  // The phones' media socket: all calls send from it and the gateway answers to it (symmetric RTP).
  const phoneSock = dgram.createSocket('udp4');
  await new Promise<void>((r) => phoneSock.bind(0, '127.0.0.1', r));
  const byAnswerPort = new Map<number, Call>();
  phoneSock.on('message', (m, from) => {
    const call = byAnswerPort.get(from.port);
    if (!call || m.length < 12) return;
    const at = performance.now();
    call.toPhone.add(m.readUInt16BE(2), m.readUInt32BE(4), at);
    if (call.hostOnset !== undefined) {
      let peak = 0;
      for (let i = 12; i < m.length; i++) peak = Math.max(peak, Math.abs(muLawToLinear(m[i]!)));
      if (peak > 1000) {
        toPhoneMs.push(at - call.hostOnset);
        call.hostOnset = undefined;
      }
    }
  });

  // The hosts' voice: one FFmpeg, 440 Hz bursts, its Opus packets copied to every room's host track.
  const hostTracks = new Set<{ writeRtp(p: Buffer): void }>();
  const voiceSock = dgram.createSocket('udp4');
  await new Promise<void>((r) => voiceSock.bind(0, '127.0.0.1', r));
  let voiceLoud = false;
  let recording = false;
  voiceSock.on('message', (m) => {
    const loud = m.length - 12 > SILENT_OPUS;
    if (loud && !voiceLoud && recording) for (const c of byAnswerPort.values()) c.hostOnset = performance.now();
    voiceLoud = loud;
    for (const t of hostTracks) t.writeRtp(m);
  });
  const voice = launchFfmpeg([
    '-re', '-f', 'lavfi', '-i', "sine=frequency=440:sample_rate=48000:samples_per_frame=960,volume='if(lt(mod(t\\,1)\\,0.2)\\,0.5\\,0)':eval=frame",
    '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '32k', '-application', 'lowdelay', '-frame_duration', '20', '-payload_type', '111',
    '-f', 'rtp', `rtp://127.0.0.1:${voiceSock.address().port}?pkt_size=1200`,
  ]);

  const { tone, silence } = frames();
  const toRoomMs: number[] = [];
  const toPhoneMs: number[] = [];
  const results: SipStep[] = [];
  let serial = 0;
  try {
    for (const n of steps) {
      serial++;
      const step = await runStep(n, serial);
      results.push(step);
      record(
        `sip: ${n} concurrent calls — gateway CPU per call (G.711↔Opus both ways)`,
        step.perCall,
        'cores',
        `${step.answered}/${n} answered; total ${step.cores.toFixed(2)} cores over ${seconds} s; load average ${step.load.toFixed(1)}`,
      );
      record(`sip: ${n} calls — caller → room latency p50`, percentile(step.toRoomMs, 50), 'ms', `p95 ${percentile(step.toRoomMs, 95).toFixed(1)} over ${step.toRoomMs.length} bursts`);
      record(`sip: ${n} calls — room → caller latency p50`, percentile(step.toPhoneMs, 50), 'ms', `p95 ${percentile(step.toPhoneMs, 95).toFixed(1)} over ${step.toPhoneMs.length} bursts`);
      record(`sip: ${n} calls — worst stream loss / late (>${LATE_MS} ms)`, step.worstLossPct, '%', `late ${step.worstLatePct.toFixed(2)} % (mean over streams ${step.meanLatePct.toFixed(2)} %); bench's phones sent ${step.benchLatePct.toFixed(2)} % of frames > 40 ms late`);
      // Only a collapse ends the run early: a step over the threshold may be the shared machine's noise.
      if (step.answered < n || step.worstLossPct > 10) break;
    }
    const ok = (r: SipStep) => r.answered === r.calls && r.worstLossPct <= 1 && r.worstLatePct <= 1;
    const firstBad = results.findIndex((r) => !ok(r));
    const fine = firstBad < 0 ? results : results.slice(0, firstBad);
    record('sip: most concurrent calls without break-up (loss and late ≤ 1 % at every subscriber)', fine.at(-1)?.calls ?? 0, 'calls', `steps ${results.map((r) => r.calls).join(',')}`);
  } finally {
    await voice.stop();
    voiceSock.close();
    phoneSock.close();
    await gw.stop();
    await redis.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  async function runStep(n: number, serial: number): Promise<SipStep> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-sipbench-'));
    const file = path.join(dir, 'calls.xml');
    // Distinct called numbers per step and call: each call gets its own room.
    const called = `+1${String(serial).padStart(2, '0')}0[call_number]`;
    const xml = scenario({ called, caller: '+15550100', expect: 200, hangup: { by: 'gateway' } }).replace('m=audio [media_port]', `m=audio ${phoneSock.address().port}`);
    fs.writeFileSync(file, xml);
    const sipp = spawn('sipp', [
      `127.0.0.1:${sipPort}`, '-sf', file, '-m', String(n), '-l', String(n), '-r', '20', '-i', '127.0.0.1', '-p', String(await freeUdpPort()),
      '-mp', String(await freeUdpPort()), '-timeout', '600s', '-nostdin', '-trace_msg', '-trace_err',
    ], { cwd: dir, stdio: 'ignore' });
    const sippDone = new Promise<void>((r) => sipp.once('exit', () => r()));
    const calls: Call[] = [];
    const seqStart = n * 1000;
    let timer: NodeJS.Timeout | undefined;
    let sendFrames = 0;
    let sendLate = 0;
    try {
      // The gateway's answers, from SIPp's message trace: called number → answer port.
      const readAnswers = () => {
        const found = new Map<string, number>();
        for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('_messages.log'))) {
          const text = fs.readFileSync(path.join(dir, f), 'utf8');
          for (const m of text.matchAll(/message received[^\n]*\n+SIP\/2\.0 200 OK\r?\n[\s\S]*?\nTo:[^\n]*?sip:([^@>;]+)@[\s\S]*?\nm=audio (\d+) /g)) found.set(m[1]!, Number(m[2]));
        }
        return found;
      };
      // The calls that were answered in time are measured even when some were not.
      const answers = await waitFor(() => {
        const found = readAnswers();
        return found.size >= n ? found : undefined;
      }, 30_000 + n * 1000, `${n} answered calls`).catch(() => readAnswers());
      if (answers.size < n && process.env.BENCH_DEBUG) {
        for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('_errors.log'))) console.error(fs.readFileSync(path.join(dir, f), 'utf8').slice(-3000));
        console.error('gateway stderr:', gw.stderr().slice(-3000));
      }
      for (const [num, port] of answers) {
        const call: Call = { called: num, room: `${PREFIX}${num}`, answerPort: port, ssrc: 0x10000 + port, seq: seqStart, onset: undefined, hostOnset: undefined, toRoom: new StreamStats(48), toPhone: new StreamStats(8) };
        calls.push(call);
        byAnswerPort.set(port, call);
      }
      // The phones talk: 20 ms frames on one clock, caught up if the timer runs late.
      const t0 = performance.now();
      let sent = 0;
      const tick = () => {
        const now = performance.now();
        const due = Math.floor((now - t0) / FRAME_MS);
        for (; sent <= due; sent++) {
          // The bench's own lateness (a busy event loop) shows up downstream as late packets too.
          if (recording) {
            sendFrames++;
            if (now - (t0 + sent * FRAME_MS) > FRAME_MS * 2) sendLate++;
          }
          const burst = sent % BURST_EVERY < BURST_FRAMES;
          for (const c of calls) {
            const h = Buffer.alloc(12);
            h[0] = 0x80;
            h[1] = 0; // PCMU
            h.writeUInt16BE(c.seq++ & 0xffff, 2);
            h.writeUInt32BE((sent * 160) >>> 0, 4);
            h.writeUInt32BE(c.ssrc, 8);
            phoneSock.send(Buffer.concat([h, burst ? tone : silence]), c.answerPort, '127.0.0.1');
            // A burst the room never heard is not carried into the next one's latency.
            if (recording && sent % BURST_EVERY === 0) c.onset = performance.now();
          }
        }
      };
      timer = setInterval(tick, 5);
      // A host in each room: publishes the voice, subscribes to the caller.
      for (const c of calls) {
        const host = await NodeParticipant.connect(gw.url, await joinToken(c.room, 'host', { canPublish: true, canSubscribe: true }));
        c.host = host;
        hostTracks.add(await host.publishTrack({ kind: 'audio', source: 'microphone' }));
        const track = await waitFor(() => host.remoteTracks.find((t: RemoteTrack) => t.kind === 'audio'), 20_000, `the caller's track in ${c.room}`);
        track.track.onReceiveRtp.subscribe((rtp) => {
          const at = performance.now();
          c.toRoom.add(rtp.header.sequenceNumber, rtp.header.timestamp, at);
          if (c.onset !== undefined && rtp.payload.length > SILENT_OPUS) {
            toRoomMs.push(at - c.onset);
            c.onset = undefined;
          }
        });
      }
      await new Promise((r) => setTimeout(r, 3000));
      // The window: statistics from here on.
      for (const c of calls) {
        c.toRoom.reset();
        c.toPhone.reset();
      }
      toRoomMs.length = 0;
      toPhoneMs.length = 0;
      recording = true;
      const load = os.loadavg()[0]!;
      const cpu0 = treeCpu(gw.child.pid!);
      const w0 = performance.now();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const cpu1 = treeCpu(gw.child.pid!);
      const wall = (performance.now() - w0) / 1000;
      recording = false;
      let used = 0;
      for (const [pid, s] of cpu1) used += s - (cpu0.get(pid) ?? 0);
      const cores = used / wall;
      const pct = (a: number, b: number) => (b === 0 ? 100 : (100 * a) / b);
      // A stream that got nothing at all counts as fully lost.
      const worstLossPct = Math.max(0, ...calls.flatMap((c) => [c.toRoom, c.toPhone].map((s) => (s.received === 0 ? 100 : pct(s.lost, s.expected)))));
      const worstLatePct = Math.max(0, ...calls.flatMap((c) => [c.toRoom, c.toPhone].map((s) => pct(s.late, s.received))));
      if (process.env.BENCH_DEBUG) for (const c of calls) console.error(c.room, 'toRoom', c.toRoom.received, c.toRoom.lost, c.toRoom.late, 'toPhone', c.toPhone.received, c.toPhone.lost, c.toPhone.late);
      return { load, benchLatePct: pct(sendLate, sendFrames), meanLatePct: calls.length ? calls.reduce((a, c) => a + pct(c.toRoom.late, c.toRoom.received) + pct(c.toPhone.late, c.toPhone.received), 0) / (2 * calls.length) : Number.NaN, calls: n, answered: calls.length, cores, perCall: calls.length ? cores / calls.length : Number.NaN, toRoomMs: [...toRoomMs], toPhoneMs: [...toPhoneMs], worstLossPct, worstLatePct };
    } finally {
      if (timer) clearInterval(timer);
      // Deleting the rooms hangs the calls up (BYE to SIPp, which then ends).
      await Promise.all(calls.map((c) => rooms.deleteRoom(c.room).catch(() => undefined)));
      await Promise.all(calls.flatMap((c) => (c.host ? [c.host.leave().catch(() => undefined)] : [])));
      hostTracks.clear();
      for (const c of calls) byAnswerPort.delete(c.answerPort);
      await Promise.race([sippDone, new Promise((r) => setTimeout(r, 15_000))]);
      if (sipp.exitCode === null) sipp.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Share of `hz` in the mono 8 kHz PCM of `file` from `fromS`, `seconds` long (FFmpeg decodes). */
async function toneShareOfFile(file: string, hz: number, fromS: number, seconds: number): Promise<number> {
  const pcm = path.join(os.tmpdir(), `roomgate-podcast-${process.pid}-${hz}.s16`);
  const ff = launchFfmpeg(['-y', '-ss', String(fromS), '-t', String(seconds), '-i', file, '-vn', '-ac', '1', '-ar', '8000', '-f', 's16le', pcm]);
  if ((await ff.exited) !== 0) throw new Error(`could not decode ${file}: ${ff.stderrTail()}`);
  const buf = fs.readFileSync(pcm);
  fs.rmSync(pcm, { force: true });
  return toneShare(new Int16Array(buf.buffer, buf.byteOffset, buf.length >> 1), 8000, hz);
}

// npm run bench -- sip-podcast: the podcast. A SIP guest (SIPp streaming a 1 kHz μ-law
// tone) and a host (Node participant, 440 Hz Opus) in one room; a room composite egress, audio
// only, records it to an OGG file and streams it to an RTMP listener (FFmpeg). Reported: the
// share of each voice's tone in each recording (both well above 0 means both voices are in it).
export async function runSipPodcast(record: Recorder): Promise<void> {
  const sipPort = await freeUdpPort();
  const bench = await startBenchGateway({
    ROOMGATE_SIP_ENABLED: 'true', ROOMGATE_SIP_PORT: String(sipPort), ROOMGATE_API_KEY: API_KEY, ROOMGATE_API_SECRET: API_SECRET,
    ROOMGATE_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'silent',
  });
  const { gw } = bench;
  const worker = await startEgressWorker(gw.config, { gatewayUrl: gw.url });
  const sip = new SipClient(gw.url, API_KEY, API_SECRET);
  const rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
  const egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  const room = 'podcast';
  let host: NodeParticipant | undefined;
  let sink: Awaited<ReturnType<typeof startRtmpSink>> | undefined;
  try {
    const trunk = await sip.createSipInboundTrunk('guests', ['+15550500'], { allowedAddresses: ['127.0.0.0/8'] });
    await sip.createSipDispatchRule({ type: 'direct', roomName: room }, { trunkIds: [trunk.sipTrunkId] });
    host = await NodeParticipant.connect(gw.url, await joinToken(room, 'host', { canPublish: true, canSubscribe: true }));
    await host.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const phone = await runSipp(gw.sipPort, { called: '+15550500', caller: '+15550177', expect: 200, audio: await muLawTone(1000, 30), hangup: { by: 'gateway' } }, 120);
    const guest = await phone.during(waitFor(async () => (await rooms.listParticipants(room)).find((p) => p.identity === 'sip_+15550177'), 20_000, 'the SIP guest'));
    sink = await startRtmpSink('podcast');
    const started = await egress.startRoomCompositeEgress(
      room,
      { file: new EncodedFileOutput({ filepath: 'bench/podcast-{time}', fileType: EncodedFileType.OGG }), stream: new StreamOutput({ urls: [sink.url] }) },
      { audioOnly: true },
    );
    await waitFor(async () => ((await egress.listEgress({ egressId: started.egressId }))[0]?.status === EgressStatus.EGRESS_ACTIVE ? true : undefined), 30_000, 'the egress ACTIVE');
    await new Promise((r) => setTimeout(r, 10_000));
    await egress.stopEgress(started.egressId);
    const done = await waitFor(async () => {
      const i = (await egress.listEgress({ egressId: started.egressId }))[0];
      return i && i.status >= EgressStatus.EGRESS_COMPLETE ? i : undefined;
    }, 60_000, 'the egress to end');
    await rooms.removeParticipant(room, guest.identity);
    await phone.done;
    await sink.stop();
    if (done.status !== EgressStatus.EGRESS_COMPLETE) throw new Error(`egress ended ${EgressStatus[done.status]}: ${done.error}`);
    for (const [label, file] of [['OGG file', done.fileResults[0]!.location], ['RTMP stream', sink.file]] as const) {
      const [host440, guest1k] = [await toneShareOfFile(file, 440, 2, 5), await toneShareOfFile(file, 1000, 2, 5)];
      record(`sip-podcast: ${label} — host's 440 Hz / guest's 1 kHz share of power`, host440, 'share', `1 kHz ${guest1k.toFixed(3)}; ${file}`);
    }
  } finally {
    await host?.leave().catch(() => undefined);
    await sink?.stop().catch(() => undefined);
    await worker.close();
    await bench.close();
  }
}
