// A whole gateway as users run it: `bin/roomgate.mjs start` as a child process, with RTMP, its
// embedded Redis and its egress worker child, logs captured (tests read them for leaked secrets).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { API_KEY, API_SECRET } from './gateway.ts';
import { freePort, waitFor } from './net.ts';

export const BIN = path.resolve('bin/roomgate.mjs');

export interface SpawnedGateway {
  url: string;
  pid: number;
  rtmpPort: number;
  dataDir: string;
  /** Everything the gateway and its worker wrote to stdout and stderr so far. */
  logs(): string;
  stop(): Promise<void>;
}

/** The environment without the caller's ROOMGATE_* and LIVEKIT_* settings. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ROOMGATE_') && !k.startsWith('LIVEKIT_')));
  return { ...env, ...extra };
}

export async function spawnGateway(extra: Record<string, string> = {}): Promise<SpawnedGateway> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-spawned-'));
  const port = await freePort();
  const rtmpPort = await freePort();
  const child: ChildProcess = spawn(process.execPath, [BIN, 'start'], {
    env: cleanEnv({
      ROOMGATE_PORT: String(port),
      ROOMGATE_RTMP_PORT: String(rtmpPort),
      ROOMGATE_REDIS_EMBEDDED_PORT: String(await freePort()),
      ROOMGATE_DATA_DIR: dataDir,
      ROOMGATE_RTC_WORKERS: '1',
      ROOMGATE_API_KEY: API_KEY,
      ROOMGATE_API_SECRET: API_SECRET,
      ROOMGATE_LOG_LEVEL: 'info',
      ...extra,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: false,
  });
  let logs = '';
  child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitFor(() => (logs.includes('roomgate listening') ? true : undefined), 60_000, 'the gateway to start');
    if (extra.ROOMGATE_EGRESS_WORKER !== 'false') await waitFor(() => (logs.includes('egress worker ready') ? true : undefined), 60_000, 'the egress worker');
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${logs.slice(-3000)}`);
  }
  // A gateway bound to another loopback address (ROOMGATE_BIND=127.0.0.3) is reached there.
  const host = extra.ROOMGATE_BIND ?? '127.0.0.1';
  return { url: `http://${host}:${port}`, pid: child.pid!, rtmpPort, dataDir, logs: () => logs, stop };
}
