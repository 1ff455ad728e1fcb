// The egress worker child of `npm start` (issue 19, finding 7): a SIGKILLed worker is replaced and
// the new one takes jobs; a SIGKILLed gateway takes its worker with it; SIGTERM mid-recording
// drains the egress to COMPLETE with its real duration and a playable file.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { DirectFileOutput, EgressClient, EgressStatus } from 'livekit-server-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant } from '../../src/client/node.ts';
import { EgressStore } from '../../src/egress/EgressStore.ts';
import { API_KEY, API_SECRET } from '../helpers/gateway.ts';
import { egressLookups } from '../helpers/egress.ts';
import { freePort, isAlive, waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe } from '../helpers/rtpRecorder.ts';

const BIN = path.resolve('bin/roomgate.mjs');
let redis: TestRedis;
const children: ChildProcess[] = [];
const people: NodeParticipant[] = [];

interface Spawned {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  output: () => string;
}

/** `roomgate start` as its own process, on the test Redis, with the egress worker child on. */
async function startGatewayProcess(): Promise<Spawned> {
  const port = await freePort();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ROOMGATE_')));
  const child = spawn(process.execPath, [BIN, 'start'], {
    env: {
      ...env,
      ROOMGATE_PORT: String(port),
      ROOMGATE_RTMP_ENABLED: 'false',
      ROOMGATE_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-lifecycle-')),
      ROOMGATE_RTC_WORKERS: '1',
      ROOMGATE_API_KEY: API_KEY,
      ROOMGATE_API_SECRET: API_SECRET,
      ROOMGATE_REDIS_URL: redis.url,
      ROOMGATE_LOG_LEVEL: 'info',
      ROOMGATE_EGRESS_DRAIN_TIMEOUT: '40',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out = (out + d).slice(-200_000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-200_000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor(() => (out.includes('egress worker ready') ? true : undefined), 120_000, 'gateway and egress worker start');
  return { child, url: `http://127.0.0.1:${port}`, exited, output: () => out };
}

/** The egress worker child of a gateway process (`node --import tsx …/workers/egress.ts`). */
function workerPidOf(gatewayPid: number): number {
  try {
    const pids = execFileSync('pgrep', ['-P', String(gatewayPid), '-f', 'workers/egress.ts'], { encoding: 'utf8' }).trim().split('\n').map(Number);
    return pids.find(Boolean) ?? 0;
  } catch {
    return 0; // pgrep exits 1 when nothing matches
  }
}

beforeAll(async () => {
  redis = await startRedis();
});

afterEach(async () => {
  await Promise.all(people.splice(0).map((p) => p.leave().catch(() => undefined)));
  for (const c of children.splice(0)) {
    const worker = c.pid ? workerPidOf(c.pid) : 0;
    if (c.exitCode === null) c.kill('SIGKILL');
    if (worker && isAlive(worker)) process.kill(worker, 'SIGKILL');
  }
});

afterAll(async () => {
  await redis?.stop();
});

describe('egress worker child', () => {
  it('exits when its gateway is SIGKILLed', async () => {
    const gw = await startGatewayProcess();
    const worker = workerPidOf(gw.child.pid!);
    expect(worker).toBeGreaterThan(0);
    gw.child.kill('SIGKILL');
    await gw.exited;
    await waitFor(() => (!isAlive(worker) ? true : undefined), 30_000, 'orphaned worker to exit');
  }, 240_000);

  it('is restarted after kill -9, and the new worker takes jobs', async () => {
    const gw = await startGatewayProcess();
    const first = workerPidOf(gw.child.pid!);
    expect(first).toBeGreaterThan(0);
    process.kill(first, 'SIGKILL');
    const second = await waitFor(() => {
      const pid = workerPidOf(gw.child.pid!);
      return pid && pid !== first ? pid : undefined;
    }, 60_000, 'a new worker child');
    await waitFor(() => (gw.output().split('egress worker ready').length > 2 ? true : undefined), 120_000, 'the new worker ready');
    expect(gw.output()).toMatch(/egress worker child died: restarting it/);

    const egress = new EgressClient(gw.url, API_KEY, API_SECRET);
    const { status } = egressLookups(() => egress);
    const alice = await join(gw.url, 'sup', 'alice');
    people.push(alice);
    const audio = await alice.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const started = await egress.startTrackEgress('sup', new DirectFileOutput({ filepath: 'sup/{track_id}' }), audio.trackSid);
    await status(started.egressId, EgressStatus.EGRESS_ACTIVE, 40_000);
    expect(isAlive(second)).toBe(true);
    await egress.stopEgress(started.egressId);
    await status(started.egressId, EgressStatus.EGRESS_COMPLETE, 40_000);
  }, 240_000);

  it('drains on SIGTERM: a running recording ends COMPLETE with its real duration and a playable file', async () => {
    const gw = await startGatewayProcess();
    const egress = new EgressClient(gw.url, API_KEY, API_SECRET);
    const { status } = egressLookups(() => egress);
    const alice = await join(gw.url, 'drain', 'alice');
    people.push(alice);
    const audio = await alice.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const started = await egress.startTrackEgress('drain', new DirectFileOutput({ filepath: 'drain/{track_id}' }), audio.trackSid);
    await status(started.egressId, EgressStatus.EGRESS_ACTIVE, 40_000);
    await new Promise((r) => setTimeout(r, 4000));

    gw.child.kill('SIGTERM');
    expect(await gw.exited, gw.output().slice(-3000)).toBe(0);

    const client = new Redis(redis.url);
    try {
      const ended = (await new EgressStore(client).get(started.egressId))!;
      expect(EgressStatus[ended.status], ended.error).toBe('EGRESS_COMPLETE');
      expect(ended.details).toMatch(/drained/);
      const f = ended.fileResults[0]!;
      expect(f.duration).toBeGreaterThan(2_000_000_000n); // ns
      expect(fs.existsSync(f.location)).toBe(true);
      const p = probe(f.location);
      expect(p.streams.map((s) => s.codec_name)).toEqual(['opus']);
      expect(p.duration).toBeGreaterThan(2);
    } finally {
      client.disconnect();
    }
  }, 240_000);
});
