// `npm run fuzz`: 10 000+ seeded inputs per network edge (test/fuzz/edges.ts; SIP included) against a gateway
// process started here (`roomgate start`, its own data dir, embedded Redis, RTMP on, no egress
// worker, no webhooks), on loopback only. Reports 5xx answers, internal errors, hangs, a crashed
// gateway and RSS growth per edge; exits 1 on any finding.
//
//   npm run fuzz -- [--inputs 10000] [--seed 1] [--memory-bound-mb 256] [--edges twirp,rtc,…]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fuzzAgent, fuzzAll, fuzzInternal, fuzzRtc, fuzzRtmp, fuzzSip, fuzzTwirp, type EdgeReport, type FuzzOptions, type FuzzTarget } from '../test/fuzz/edges.ts';
import { freePort, waitFor } from '../test/helpers/net.ts';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '1' },
    'memory-bound-mb': { type: 'string', default: '384' },
    edges: { type: 'string' },
  },
});
const opts: FuzzOptions = { seed: Number(values.seed), inputs: Number(values.inputs), memoryBoundMb: Number(values['memory-bound-mb']) };
if (!Number.isInteger(opts.inputs) || opts.inputs < 1 || !Number.isInteger(opts.seed)) throw new Error('--inputs and --seed take integers');

const API_KEY = 'APIfuzz';
const API_SECRET = 'fuzz-secret-that-is-long-enough-0123456789';
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-fuzz-'));
const [port, rtmpPort, redisPort, sipPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ROOMGATE_')));
const gateway = spawn(process.execPath, ['bin/roomgate.mjs', 'start'], {
  env: {
    ...env,
    ROOMGATE_PORT: String(port),
    ROOMGATE_RTMP_PORT: String(rtmpPort),
    ROOMGATE_SIP_ENABLED: 'true',
    ROOMGATE_SIP_PORT: String(sipPort),
    ROOMGATE_REDIS_EMBEDDED_PORT: String(redisPort),
    ROOMGATE_DATA_DIR: dataDir,
    ROOMGATE_RTC_WORKERS: '1',
    ROOMGATE_API_KEY: API_KEY,
    ROOMGATE_API_SECRET: API_SECRET,
    ROOMGATE_EGRESS_WORKER: 'false',
    ROOMGATE_LOG_LEVEL: 'error',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let output = '';
gateway.stdout.on('data', (d) => (output = (output + d).slice(-20_000)));
gateway.stderr.on('data', (d) => (output = (output + d).slice(-20_000)));
let exited: number | string | null = null;
gateway.once('exit', (code, signal) => (exited = code ?? signal));

const url = `http://127.0.0.1:${port}`;
const target: FuzzTarget = {
  url,
  rtmpPort,
  sipPort,
  apiKey: API_KEY,
  apiSecret: API_SECRET,
  rss: () => {
    try {
      return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${gateway.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch {
      return 0;
    }
  },
  alive: () => exited === null,
};

let reports: EdgeReport[] = [];
try {
  await waitFor(async () => exited === null && (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)), 60_000, 'the gateway to start');
  const log = (line: string) => process.stdout.write(`${line}\n`);
  if (values.edges) {
    const only: Record<string, () => Promise<EdgeReport>> = {
      twirp: () => fuzzTwirp(target, { ...opts, seed: opts.seed + 1 }),
      rtc: () => fuzzRtc(target, { ...opts, seed: opts.seed + 2 }),
      agent: () => fuzzAgent(target, { ...opts, seed: opts.seed + 3 }),
      rtmp: () => fuzzRtmp(target, { ...opts, seed: opts.seed + 5 }),
      sip: () => fuzzSip(target, { ...opts, seed: opts.seed + 7 }),
      'internal-egress': () => fuzzInternal(target, { ...opts, seed: opts.seed + 6 }),
    };
    for (const name of values.edges.split(',')) {
      const run = only[name];
      if (!run) throw new Error(`unknown edge '${name}' (whip-whep runs with all edges only)`);
      log(`fuzzing ${name}…`);
      reports.push(await run());
    }
  } else {
    reports = await fuzzAll(target, opts, log);
  }
} finally {
  gateway.kill('SIGTERM');
  await waitFor(() => exited !== null, 30_000, 'the gateway to stop').catch(() => gateway.kill('SIGKILL'));
}

const findings = reports.flatMap((r) => r.findings);
process.stdout.write('\nedge               inputs  findings  seconds  RSS MB (before → after)\n');
for (const r of reports) {
  process.stdout.write(`${r.edge.padEnd(18)} ${String(r.inputs).padStart(6)}  ${String(r.findings.length).padStart(8)}  ${String(r.seconds).padStart(7)}  ${r.rssBeforeMb} → ${r.rssAfterMb}\n`);
}
process.stdout.write(`total: ${reports.reduce((n, r) => n + r.inputs, 0)} inputs, ${findings.length} finding(s)\n`);
for (const f of findings) process.stdout.write(`\n[${f.edge}] ${f.kind}: ${f.detail}\n  input: ${f.input}\n`);
if (exited !== null && exited !== 0 && exited !== 'SIGTERM') process.stdout.write(`\ngateway output tail:\n${output}\n`);
fs.rmSync(dataDir, { recursive: true, force: true });
process.exit(findings.length > 0 ? 1 : 0);
