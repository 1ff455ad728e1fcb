// npm run bench: figures for the foundation, printed as a table and written to bench/results/*.json.
// Nothing here asserts: numbers are reported, not tested.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { AccessToken, RoomServiceClient } from 'livekit-server-sdk';
import { TokenVerifier, mintToken } from '../src/auth/tokens.ts';
import { loadConfig } from '../src/config.ts';
import { startGateway } from '../src/main.ts';
import { runComposite } from './composite.ts';
import { runEgress } from './egress.ts';
import { runFanout } from './fanout.ts';
import { runJanusFanout, type JanusFanoutRow } from './janus.ts';
import { runIngest, type IngestFigures } from './ingest.ts';
import { runSip, runSipPodcast } from './sip.ts';
import { runWhip } from './whip.ts';
import { runAgents } from './agents.ts';
import { runRoomgateAgentJob, runStockAgents } from './stock-agents.ts';
import { runLivekit } from './livekit.ts';
import { runMultinode } from './multinode.ts';
import { printPublishers, runPublishers, type PublisherFigures } from './publishers.ts';
import { freePort } from '../test/helpers/net.ts';
import { startRedis } from '../test/helpers/redis.ts';

interface Row {
  name: string;
  value: number;
  unit: string;
  note?: string;
}

const rows: Row[] = [];
const record = (name: string, value: number, unit: string, note?: string) =>
  rows.push({ name, value: Math.abs(value) < 1 ? Math.round(value * 10000) / 10000 : Math.round(value * 100) / 100, unit, ...(note ? { note } : {}) });

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timeCalls(n: number, concurrency: number, fn: (i: number) => Promise<unknown>) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        await fn(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const total = performance.now() - started;
  latencies.sort((a, b) => a - b);
  return { p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), perSecond: (n / total) * 1000 };
}

/** `npm run bench` runs every suite; `npm run bench -- fanout` runs the named ones. */
const only = new Set(process.argv.slice(2));
const wanted = (name: string) => only.size === 0 || only.has(name);

async function main() {
  if (wanted('foundation')) await foundation();
  let fanout: Awaited<ReturnType<typeof runFanout>> = [];
  // ROOMGATE_BENCH_FANOUT_STEPS=50,100 for a short run; `fanout` runs one worker then two piped, `fanout-pipe` only the latter.
  const steps = process.env.ROOMGATE_BENCH_FANOUT_STEPS?.split(',').map(Number);
  if (wanted('fanout')) fanout = await runFanout(steps);
  if (wanted('fanout') || wanted('fanout-pipe')) fanout.push(...(await runFanout(steps, undefined, 'pipe')));
  // The same publisher and steps through Janus's streaming plugin, after roomgate's (fanout-janus alone).
  let janus: JanusFanoutRow[] = [];
  if (wanted('fanout-janus')) janus = await runJanusFanout(steps);
  else if (wanted('fanout')) {
    // Janus is an apt package and this side needs root: without them the other suites still run.
    janus = await runJanusFanout(steps).catch((err: unknown) => {
      console.error(`fan-out beside Janus not run: ${err instanceof Error ? err.message : String(err)}`);
      return [];
    });
  }
  let ingest: IngestFigures | undefined;
  if (wanted('ingest')) ingest = await runIngest();
  if (wanted('whip')) await runWhip(record);
  if (wanted('agents')) await runAgents(record);
  if (wanted('agents') || wanted('agents-stock')) await runStockAgents(record);
  if (wanted('agents') || wanted('agents-job')) await runRoomgateAgentJob(record);
  if (wanted('egress')) await runEgress(record);
  if (wanted('composite')) await runComposite(record);
  if (wanted('livekit')) await runLivekit(record);
  if (wanted('sip')) await runSip(record);
  if (wanted('sip-podcast')) await runSipPodcast(record);
  if (wanted('multinode')) await runMultinode(record);
  let publishers: PublisherFigures[] = [];
  if (wanted('publishers')) publishers = await runPublishers();
  print(fanout, ingest, publishers, janus);
}

async function foundation() {
  const key = 'APIbench';
  const secret = 'bench-secret-0123456789-0123456789-xx';

  // Token verification: the cost every API call and (later) every join pays.
  const verifier = new TokenVerifier({ [key]: secret });
  const at = new AccessToken(key, secret, { identity: 'u' });
  at.addGrant({ roomJoin: true, room: 'r', canPublish: true });
  const token = await at.toJwt();
  for (let i = 0; i < 500; i++) await verifier.verify(token);
  let t = performance.now();
  const N = 5000;
  for (let i = 0; i < N; i++) await verifier.verify(token);
  record('token verify (jose HS256)', (N / (performance.now() - t)) * 1000, 'ops/s');
  t = performance.now();
  for (let i = 0; i < 2000; i++) await mintToken(key, secret, { identity: 'u', video: { roomJoin: true } });
  record('token mint', (2000 / (performance.now() - t)) * 1000, 'ops/s');

  // Cold start of the embedded redis-server child (what `npm start` pays with nothing configured).
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-bench-'));
  const redisStart = performance.now();
  const child = spawn('redis-server', ['--port', String(await freePort()), '--bind', '127.0.0.1', '--dir', dataDir, '--appendonly', 'yes', '--save', ''], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => /Ready to accept/.test(d.toString()) && resolve()));
  record('redis-server child ready', performance.now() - redisStart, 'ms');
  child.kill('SIGTERM');

  const redis = await startRedis();
  const config = loadConfig({
    env: {
      ROOMGATE_PORT: String(await freePort()),
      ROOMGATE_REDIS_URL: redis.url,
      ROOMGATE_RTMP_ENABLED: 'false',
      ROOMGATE_DATA_DIR: dataDir,
      ROOMGATE_LOG_LEVEL: 'silent',
      ROOMGATE_API_KEY: key,
      ROOMGATE_API_SECRET: secret,
    },
  });
  const startT = performance.now();
  const gw = await startGateway(config);
  record(`gateway start (${config.rtc.workers} mediasoup workers)`, performance.now() - startT, 'ms');
  try {
    const client = new RoomServiceClient(gw.url, key, secret);
    for (let i = 0; i < 50; i++) await client.listRooms();

    const seq = await timeCalls(500, 1, (i) => client.createRoom({ name: `bench-${i}` }));
    record('CreateRoom p50 (sequential, new room + router)', seq.p50, 'ms');
    record('CreateRoom p95', seq.p95, 'ms');
    record('CreateRoom throughput, 1 client', seq.perSecond, 'calls/s');
    const par = await timeCalls(1000, 16, (i) => client.createRoom({ name: `bench-par-${i}` }));
    record('CreateRoom throughput, 16 concurrent', par.perSecond, 'calls/s', `p95 ${par.p95.toFixed(1)} ms`);
    const list = await timeCalls(200, 1, () => client.listRooms());
    record('ListRooms p50 (1500 rooms)', list.p50, 'ms');
    const del = await timeCalls(1500, 16, (i) => client.deleteRoom(i < 500 ? `bench-${i}` : `bench-par-${i - 500}`));
    record('DeleteRoom throughput, 16 concurrent', del.perSecond, 'calls/s', `p95 ${del.p95.toFixed(1)} ms`);
    const rss = process.memoryUsage().rss / 1024 / 1024;
    record('bench process RSS after 1500 rooms', rss, 'MiB', 'gateway runs in this process');
  } finally {
    await gw.close();
    await redis.stop();
  }
}

function print(fanout: Awaited<ReturnType<typeof runFanout>>, ingest?: IngestFigures, publishers: PublisherFigures[] = [], janus: JanusFanoutRow[] = []) {
  console.log(`\nroomgate bench — ${os.cpus().length} cores, node ${process.version}\n`);
  if (rows.length > 0) {
    const width = Math.max(...rows.map((r) => r.name.length));
    console.log(`${'metric'.padEnd(width)}  ${'value'.padStart(10)}  unit`);
    for (const r of rows) console.log(`${r.name.padEnd(width)}  ${String(r.value).padStart(10)}  ${r.unit}${r.note ? `  (${r.note})` : ''}`);
  }
  for (const mode of ['one', 'pipe'] as const) {
    const table = fanout.filter((r) => r.mode === mode);
    if (table.length === 0) continue;
    console.log(
      mode === 'one'
        ? '\nfan-out: one 720p30 H.264 publisher (~2 Mb/s) to N SRTP subscribers on one mediasoup worker'
        : '\nfan-out across two workers: subscribers past 25 consumers per worker spread to a second worker fed by pipeToRouter',
    );
    console.log('subscribers  on 2nd worker  worker cpu  cpu/sub (ms/s)  gateway cpu  receiver cpu  publisher pkt/s  sent pkt/s/sub  ingest loss  delivery loss');
    for (const r of table) {
      console.log(
        [
          String(r.subscribers).padStart(11),
          String(r.onSecondWorker).padStart(13),
          r.workerCpu.toFixed(2).padStart(10),
          ((r.workerCpu / r.subscribers) * 1000).toFixed(2).padStart(14),
          r.gatewayCpu.toFixed(3).padStart(11),
          r.receiverCpu.toFixed(2).padStart(12),
          r.producerPps.toFixed(0).padStart(15),
          r.sentPerSubscriberPps.toFixed(0).padStart(14),
          `${r.ingestLossPct.toFixed(1)}%`.padStart(11),
          `${r.lossPct.toFixed(2)}%`.padStart(13),
        ].join('  '),
      );
    }
  }
  if (janus.length > 0) printJanus(fanout, janus);
  if (ingest) {
    const l = ingest.latency;
    console.log(`\nRTMP ingest glass-to-glass (flash, 640x360 x264 zerolatency publisher, decoded subscriber): p50 ${l.p50.toFixed(0)} ms, p95 ${l.p95.toFixed(0)} ms, min ${l.min.toFixed(0)}, max ${l.max.toFixed(0)} (${l.samples} flashes)`);
    console.log('\nRTMP ingest CPU per 720p30 stream (cores)\nmode                   gateway  pipeline  worker   total');
    for (const c of ingest.cpu) {
      console.log(`${c.mode.padEnd(21)}  ${c.gateway.toFixed(3).padStart(7)}  ${c.pipeline.toFixed(3).padStart(8)}  ${c.worker.toFixed(3).padStart(6)}  ${c.total.toFixed(3).padStart(6)}`);
    }
    console.log('\nconcurrent passthrough RTMP ingests (720p30 2 Mb/s + AAC each)\nstreams  gateway+pipelines+worker cpu  publishers cpu  slowest stream  median stream (packet rate vs one stream alone)');
    for (const c of ingest.concurrency) {
      console.log(`${String(c.streams).padStart(7)}  ${c.cpuTotal.toFixed(2).padStart(28)}  ${c.publishersCpu.toFixed(2).padStart(14)}  ${(c.minFpsRatio * 100).toFixed(0).padStart(13)}%  ${(c.medianFpsRatio * 100).toFixed(0).padStart(12)}%`);
    }
  }
  if (publishers.length > 0) printPublishers(publishers);
  const outDir = path.resolve('bench/results');
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, 'results.json');
  const json = { date: new Date().toISOString(), cores: os.cpus().length, node: process.version, rows, fanout, janus, ingest, publishers };
  fs.writeFileSync(file, JSON.stringify(json, null, 2));
  console.log(`\nwritten to ${path.relative(process.cwd(), file)}`);
}

/** Fan-out beside Janus: SFU CPU (roomgate: its workers + the gateway process; Janus: its process) per subscriber. */
function printJanus(fanout: Awaited<ReturnType<typeof runFanout>>, janus: JanusFanoutRow[]) {
  console.log('\nfan-out beside Janus 1.1 (streaming plugin, RTP in, WebRTC viewers): SFU cpu in cores, per subscriber in ms/s; loss = delivery loss');
  console.log('subscribers  rg 1 worker cpu  ms/s/sub  loss    rg 2 workers cpu  ms/s/sub  loss    janus cpu  ms/s/sub  loss    lossy viewers  viewers cpu  janus pkt/s/sub  janus/rg(1w)  janus/rg(2w)  machine busy (rg1/rg2/janus)');
  const sfu = (r: (typeof fanout)[number]) => r.workerCpu + r.gatewayCpu;
  for (const j of janus) {
    const one = fanout.find((r) => r.mode === 'one' && r.subscribers === j.subscribers);
    const pipe = fanout.find((r) => r.mode === 'pipe' && r.subscribers === j.subscribers);
    const side = (r: (typeof fanout)[number] | undefined) =>
      r
        ? [sfu(r).toFixed(2).padStart(15), ((sfu(r) / r.subscribers) * 1000).toFixed(2).padStart(8), `${r.lossPct.toFixed(2)}%`.padStart(6)]
        : ['-'.padStart(15), '-'.padStart(8), '-'.padStart(6)];
    const ratio = (r: (typeof fanout)[number] | undefined) => (r && sfu(r) > 0 ? (j.janusCpu / sfu(r)).toFixed(2) : '-');
    console.log(
      [
        String(j.subscribers).padStart(11),
        ...side(one),
        ...side(pipe).map((c, i) => (i === 0 ? c.padStart(16) : c)),
        j.janusCpu.toFixed(2).padStart(9),
        ((j.janusCpu / j.subscribers) * 1000).toFixed(2).padStart(8),
        `${j.lossPct.toFixed(2)}%`.padStart(6),
        `${j.lossyViewers}/${j.subscribers}`.padStart(13),
        j.receiverCpu.toFixed(2).padStart(11),
        j.receivedPerSubscriberPps.toFixed(0).padStart(15),
        ratio(one).padStart(12),
        ratio(pipe).padStart(12),
        `  ${[one?.machineBusy, pipe?.machineBusy, j.machineBusy].map((b) => (b === undefined ? '-' : b.toFixed(2))).join(' / ')}`,
      ].join('  '),
    );
  }
}

// Exits once written: native clients (rtc-node's FFI runtime) keep the event loop alive.
main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
