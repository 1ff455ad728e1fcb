// The egress worker as a child process of the gateway (`npm start` with egress.worker on), and
// for tests that need a worker they can SIGKILL. It inherits the environment (and config file),
// with the gateway's actual Redis and API URL added.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../logger.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = fileURLToPath(new URL('../../workers/egress.ts', import.meta.url));

export interface WorkerChild {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  /** SIGTERM (graceful: running jobs end and keep their files), SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
}

export function spawnEgressWorker(env: Record<string, string>, opts: { log?: Logger; inherit?: boolean } = {}): WorkerChild {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', ENTRY], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: opts.inherit === false ? 'ignore' : ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      opts.log?.info({ pid: child.pid, code }, 'egress worker child exited');
      resolve(code);
    });
    child.once('error', () => resolve(null));
  });
  return {
    pid: child.pid ?? 0,
    exited,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
