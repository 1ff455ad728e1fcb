// Stock @livekit/agents figures (npm run bench -- agents, or agents-stock alone): the example agent
// (examples/livekit-agent/agent.ts) as its users run it, its worker a child process registered at
// the gateway's /agent through the framework's CLI (`start`, one job process kept warm).
//
// - Room created → agent joined: CreateRoom, then CreateDispatch (AgentDispatchClient), until the
//   gateway sees the agent participant join; covers offer → accept → assignment → the job process's
//   rtc-node join (signal only; ICE/DTLS come after). The previous round's room is deleted first and
//   the worker gets 2 s to fork its next warm job process, so the figure is a warm start.
// - Speech onset → answer heard: an rtc-node participant speaks a 300 ms tone; the agent answers once
//   it has heard PAUSE_MS (500 ms) of quiet after it, with a chirp the participant decodes (first
//   frame above -30 dBFS). Onset is when the tone's first sample leaves the speaker's source queue
//   (capture time + the queued duration). End of speech → answer heard is the turn latency proper:
//   the agent's pause detection, its state updates, Opus both ways and the SFU.
// - Per-job memory and CPU: the job process (the worker's busiest child) while the speaker talks in
//   bursts and the agent answers, over WINDOW_S; its RSS beside the worker's other children's.
// - runRoomgateAgentJob: the same window for roomgate's own SDK (examples/echo.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ParticipantInfo_Kind } from '@livekit/protocol';
import { AudioFrame, AudioSource, AudioStream, LocalAudioTrack, ParticipantKind, Room, RoomEvent, TrackKind, TrackPublishOptions, TrackSource, type RemoteTrack } from '@livekit/rtc-node';
import { AccessToken, AgentDispatchClient, RoomServiceClient } from 'livekit-server-sdk';
import { freePort, waitFor } from '../test/helpers/net.ts';
import { cpuSeconds } from './fanout.ts';
import { BENCH_KEY, BENCH_SECRET, startBenchGateway, type Recorder } from './gateway.ts';

const AGENT = fileURLToPath(new URL('../examples/livekit-agent/agent.ts', import.meta.url));
const RATE = 48_000;
const FRAME = RATE / 100;
const TONE_MS = 300;
const WINDOW_S = 10;

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rmsDbfs(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return 10 * Math.log10(sum / Math.max(1, samples.length) / (32768 * 32768) + 1e-12);
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/** A speaker whose microphone sends silence until `say` queues a tone; resolves with the tone's onset. */
async function speaker(url: string, room: string) {
  const at = new AccessToken(BENCH_KEY, BENCH_SECRET, { identity: 'speaker' });
  at.addGrant({ roomJoin: true, room, canPublish: true, canSubscribe: true });
  const r = new Room();
  await r.connect(url, await at.toJwt(), { autoSubscribe: true, dynacast: false });
  // A short queue: what is captured goes out within 50 ms, and the onset is corrected by what is queued.
  const source = new AudioSource(RATE, 1);
  await r.localParticipant!.publishTrack(LocalAudioTrack.createAudioTrack('mic', source), new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
  let toneFrames = 0;
  let onset: ((at: number) => void) | undefined;
  let stopped = false;
  let n = 0;
  const loop = (async () => {
    while (!stopped) {
      const data = new Int16Array(FRAME);
      if (toneFrames > 0) {
        for (let i = 0; i < FRAME; i++, n++) data[i] = Math.round(12000 * Math.sin((2 * Math.PI * 440 * n) / RATE));
        toneFrames--;
        if (onset) {
          onset(performance.now() + source.queuedDuration);
          onset = undefined;
        }
      }
      await source.captureFrame(new AudioFrame(data, RATE, 1, FRAME));
    }
  })();
  return {
    room: r,
    say(): Promise<number> {
      toneFrames = TONE_MS / 10;
      return new Promise((resolve) => (onset = resolve));
    },
    async close() {
      stopped = true;
      await loop;
      await source.close();
      await r.disconnect();
    },
  };
}

/** The CPU (cores) of `pids()` while the speaker talks in bursts for WINDOW_S and the agent answers. */
async function jobWindow(talker: Awaited<ReturnType<typeof speaker>>, pids: () => number[]): Promise<{ cores: number; turns: number }> {
  const cpu = () => pids().reduce((sum, p) => sum + cpuSeconds(p), 0);
  const c0 = cpu();
  const t0 = performance.now();
  let turns = 0;
  while (performance.now() - t0 < WINDOW_S * 1000) {
    await talker.say();
    turns++;
    await sleep(1500);
  }
  return { cores: (cpu() - c0) / ((performance.now() - t0) / 1000), turns };
}

function descendantsOf(pid: number): number[] {
  const kids = childrenOf(pid);
  return [...kids, ...kids.flatMap(descendantsOf)];
}

/**
 * The same window for roomgate's own agent SDK: examples/echo.ts (it plays back what it heard after
 * each pause) as a worker process; its job runs inside that process, with FFmpeg children to decode
 * and encode Opus, so the job's share is the process tree's CPU and its RSS growth over the idle worker.
 */
export async function runRoomgateAgentJob(record: Recorder): Promise<void> {
  const bench = await startBenchGateway();
  const { gw } = bench;
  const worker = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../examples/echo.ts', import.meta.url))], {
    env: { ...process.env, LIVEKIT_URL: gw.url, LIVEKIT_API_KEY: BENCH_KEY, LIVEKIT_API_SECRET: BENCH_SECRET, ECHO_AUTOMATIC: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  worker.stdout.on('data', (d: Buffer) => (log += d.toString()));
  worker.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const dispatch = new AgentDispatchClient(gw.url, BENCH_KEY, BENCH_SECRET);
  let talker: Awaited<ReturnType<typeof speaker>> | undefined;
  try {
    talker = await speaker(gw.url.replace('http', 'ws'), 'bench-rg-speech');
    await sleep(5000); // the worker loaded and registered
    if (worker.exitCode !== null) throw new Error(`echo worker exited: ${log}`);
    const idleRss = rssMiB(worker.pid!);
    await dispatch.createDispatch('bench-rg-speech', 'echo');
    await waitFor(() => [...talker!.room.remoteParticipants.values()].find((p) => p.kind === ParticipantKind.AGENT), 30_000, 'roomgate agent joined');
    await sleep(2000);
    const { cores, turns } = await jobWindow(talker, () => [worker.pid!, ...descendantsOf(worker.pid!)]);
    record('agents (roomgate SDK): one job, worker process tree CPU', cores, 'cores', `examples/echo.ts, ${turns} turns in ${WINDOW_S} s, FFmpeg children included`);
    const tree = [worker.pid!, ...descendantsOf(worker.pid!)];
    record('agents (roomgate SDK): worker RSS growth with one job', rssMiB(worker.pid!) - idleRss, 'MiB', `idle worker ${idleRss.toFixed(0)} MiB; FFmpeg children ${tree.slice(1).reduce((s, p) => s + rssMiB(p), 0).toFixed(0)} MiB more`);
  } finally {
    await talker?.close();
    if (worker.exitCode === null) {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      process.kill(-worker.pid!, 'SIGKILL');
      await exited;
    }
    await bench.close();
  }
}

export async function runStockAgents(record: Recorder, rounds = Number(process.env.ROOMGATE_BENCH_AGENT_ROUNDS ?? 10)): Promise<void> {
  const bench = await startBenchGateway();
  const { gw } = bench;
  const wsUrl = gw.url.replace('http', 'ws');
  const worker = spawn(process.execPath, ['--import', 'tsx', AGENT, 'start', '--log-level', 'info'], {
    env: { ...process.env, LIVEKIT_URL: wsUrl, LIVEKIT_API_KEY: BENCH_KEY, LIVEKIT_API_SECRET: BENCH_SECRET, AGENT_NAME: 'bench-chirp', AGENT_HTTP_PORT: String(await freePort()) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  worker.stdout.on('data', (d: Buffer) => (log += d.toString()));
  worker.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const api = new RoomServiceClient(gw.url, BENCH_KEY, BENCH_SECRET);
  const dispatch = new AgentDispatchClient(gw.url, BENCH_KEY, BENCH_SECRET);
  let talker: Awaited<ReturnType<typeof speaker>> | undefined;
  try {
    await waitFor(() => /registered worker/.test(log) || (worker.exitCode !== null ? Promise.reject(new Error(`worker exited: ${log}`)) : undefined), 60_000, 'stock worker registered');
    await sleep(2000); // its first warm job process

    // Room created → agent joined.
    const joinedAt = new Map<string, number>();
    gw.rooms.on('participantjoined', (room, p) => {
      if (p.kind === ParticipantInfo_Kind.AGENT && !joinedAt.has(room.name)) joinedAt.set(room.name, performance.now());
    });
    const startLatency: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const name = `bench-stock-${i}`;
      const t0 = performance.now();
      await api.createRoom({ name });
      await dispatch.createDispatch(name, 'bench-chirp');
      await waitFor(() => joinedAt.get(name), 30_000, `agent in ${name}`);
      startLatency.push(joinedAt.get(name)! - t0);
      await api.deleteRoom(name);
      await sleep(2000);
    }
    startLatency.sort((a, b) => a - b);
    record('agents (stock): room created → agent joined p50', pct(startLatency, 50), 'ms', `${rounds} explicit dispatches, @livekit/agents 1.9.0 worker process, warm job process`);
    record('agents (stock): room created → agent joined p95', pct(startLatency, 95), 'ms');

    // Speech onset → answer heard.
    talker = await speaker(wsUrl, 'bench-stock-speech');
    await dispatch.createDispatch('bench-stock-speech', 'bench-chirp');
    const agent = await waitFor(
      () => [...talker!.room.remoteParticipants.values()].find((p) => p.kind === ParticipantKind.AGENT && p.attributes['lk.agent.state'] === 'listening'),
      30_000,
      'agent listening',
    );
    const track = await waitFor(
      () => [...agent.trackPublications.values()].find((p) => p.kind === TrackKind.KIND_AUDIO && p.track)?.track as RemoteTrack | undefined,
      20_000,
      'agent track',
    );
    // A warm-up turn, unmeasured: an AudioStream opened on the agent's track before any of its audio
    // was sent stayed silent (rtc-node 0.13.35), so the reader opens once the agent has spoken.
    const spoke = new Promise<void>((resolve) =>
      talker!.room.on(RoomEvent.ParticipantAttributesChanged, (changed, p) => p.identity === agent.identity && changed['lk.agent.state'] === 'speaking' && resolve()),
    );
    await sleep(1500); // the agent's AudioStream on the speaker started
    await talker.say();
    await Promise.race([spoke, sleep(10_000).then(() => Promise.reject(new Error('the agent never answered the warm-up turn')))]);
    await waitFor(() => (agent.attributes['lk.agent.state'] === 'listening' ? true : undefined), 10_000, 'agent listening after the warm-up');
    let heard: ((at: number) => void) | undefined;
    const reader = new AudioStream(track, RATE, 1).getReader();
    const reading = (async () => {
      let loud = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const isLoud = rmsDbfs(value.data) > -30;
        if (isLoud && !loud) heard?.(performance.now());
        loud = isLoud;
      }
    })();
    await sleep(500);
    const onsetLatency: number[] = [];
    const turnLatency: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const got = new Promise<number>((resolve) => (heard = resolve));
      const t0 = await talker.say();
      const at = await Promise.race([got, sleep(10_000).then(() => NaN)]);
      heard = undefined;
      if (Number.isFinite(at)) {
        onsetLatency.push(at - t0);
        turnLatency.push(at - t0 - TONE_MS);
      }
      await waitFor(() => (agent.attributes['lk.agent.state'] === 'listening' ? true : undefined), 10_000, 'agent listening again');
      await sleep(300);
    }
    // A run where the agent never answered: its worker's log says why.
    if (onsetLatency.length === 0) console.error(`bench: the stock agent never answered; its worker's log:\n${log.slice(-4000)}`);
    onsetLatency.sort((a, b) => a - b);
    turnLatency.sort((a, b) => a - b);
    record('agents (stock): speech onset → answer heard p50', pct(onsetLatency, 50), 'ms', `${onsetLatency.length}/${rounds} turns, ${TONE_MS} ms tone, agent waits 500 ms of quiet`);
    record('agents (stock): speech onset → answer heard p95', pct(onsetLatency, 95), 'ms');
    record('agents (stock): end of speech → answer heard p50', pct(turnLatency, 50), 'ms', 'pause detection (500 ms) + Opus both ways + SFU');
    record('agents (stock): end of speech → answer heard p95', pct(turnLatency, 95), 'ms');

    // Per-job memory and CPU: the job process (the worker's busiest child), while turns go on.
    const procs = childrenOf(worker.pid!);
    const before = new Map(procs.map((p) => [p, cpuSeconds(p)]));
    const w0 = cpuSeconds(worker.pid!);
    const { turns } = await jobWindow(talker, () => []);
    const used = procs.map((p) => ({ pid: p, cores: (cpuSeconds(p) - before.get(p)!) / WINDOW_S })).sort((a, b) => b.cores - a.cores);
    const job = used[0];
    if (job === undefined) throw new Error('no job process found');
    const others = used.slice(1).map((u) => `${rssMiB(u.pid).toFixed(0)} MiB`);
    record('agents (stock): job process CPU', job.cores, 'cores', `${turns} turns in ${WINDOW_S} s`);
    record('agents (stock): job process RSS', rssMiB(job.pid), 'MiB', others.length > 0 ? `the worker's other children: ${others.join(', ')}` : undefined);
    record('agents (stock): worker process CPU meanwhile', (cpuSeconds(worker.pid!) - w0) / WINDOW_S, 'cores', `RSS ${rssMiB(worker.pid!).toFixed(0)} MiB`);
    await reader.cancel();
    await reading;
  } finally {
    await talker?.close();
    if (worker.exitCode === null) {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      process.kill(-worker.pid!, 'SIGKILL');
      await exited;
    }
    await bench.close();
  }
}
