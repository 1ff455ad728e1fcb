// The egress worker as a child process of the gateway (`npm start` with egress.worker on), and
// for tests that need a worker they can SIGKILL. It inherits the environment (and config file),
// with the gateway's actual Redis and API URL added.
//
// The child runs in its own process group with an IPC channel to the gateway: Ctrl-C or systemd's
// SIGTERM to the gateway's group reaches only the gateway, which then lets the worker drain before
// it closes the rooms the recordings read from; and when the gateway dies (even SIGKILL) the
// channel closes and the worker stops instead of taking jobs as an orphan. The supervisor restarts
// a child that dies, with backoff.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../logger.ts';
import { sleep } from '../time.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = fileURLToPath(new URL('../../workers/egress.ts', import.meta.url));

export interface WorkerChild {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  /** SIGTERM (graceful: running jobs drain), SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
}

export function spawnEgressWorker(env: Record<string, string>, opts: { log?: Logger; inherit?: boolean } = {}): WorkerChild {
  const out = opts.inherit === false ? 'ignore' : 'inherit';
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', ENTRY], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', out, out, 'ipc'],
    detached: true,
  });
  // The channel is only there to close when this process dies: it must not keep it alive.
  child.channel?.unref();
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      opts.log?.info({ pid: child.pid, code, signal }, 'egress worker child exited');
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

export interface SupervisedWorker {
  /** The running child's pid (0 between a crash and its restart). */
  readonly pid: number;
  /** Children started after the first one. */
  readonly restarts: number;
  /** Drains the running child (SIGTERM, SIGKILL after graceMs) and restarts no more. */
  stop(graceMs: number): Promise<void>;
}

/** Backoff before restart n (1 s, 2 s, 4 s … 30 s); a child that ran a minute resets it. */
const backoffMs = (n: number) => Math.min(30_000, 1000 * 2 ** Math.max(0, n - 1));
const HEALTHY_MS = 60_000;

export function superviseEgressWorker(env: Record<string, string>, opts: { log: Logger }): SupervisedWorker {
  let current: WorkerChild | undefined;
  let stopping = false;
  let restarts = 0;
  let failures = 0;
  const wake = new AbortController();
  const loop = (async () => {
    while (!stopping) {
      const child = spawnEgressWorker(env, { log: opts.log });
      current = child;
      const started = Date.now();
      const code = await child.exited;
      current = undefined;
      if (stopping) return;
      failures = Date.now() - started > HEALTHY_MS ? 1 : failures + 1;
      const delay = backoffMs(failures);
      opts.log.error({ pid: child.pid, code, restartInMs: delay }, 'egress worker child died: restarting it');
      await sleep(delay, wake.signal);
      if (!stopping) restarts++;
    }
  })();
  return {
    get pid() {
      return current?.pid ?? 0;
    },
    get restarts() {
      return restarts;
    },
    async stop(graceMs) {
      stopping = true;
      wake.abort();
      await current?.stop(graceMs);
      await loop;
    },
  };
}
