// Agent workers for tests: in a child process (so a test can SIGKILL one) or in this process.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET } from './gateway.ts';
import { waitFor } from './net.ts';

export interface WorkerProcess {
  child: ChildProcess;
  stderr: () => string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs `file` (an agent module calling runIfMain) with node --import tsx, pointed at the gateway. */
export async function spawnWorker(gw: Gateway, file: string, agentName: string, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const before = new Set(gw.agents.workers().map((w) => w.id));
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(file)], {
    env: { ...process.env, LIVEKIT_URL: gw.url, LIVEKIT_API_KEY: API_KEY, LIVEKIT_API_SECRET: API_SECRET, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`worker exited early: ${err}`);
      return gw.agents.workers().some((w) => w.agentName === agentName && !before.has(w.id)) || undefined;
    },
    30_000,
    `worker ${agentName} to register`,
  );
  return {
    child,
    stderr: () => err,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await exited;
      }
    },
  };
}

export const workerOptions = (gw: Gateway) => ({ url: gw.url, apiKey: API_KEY, apiSecret: API_SECRET });
