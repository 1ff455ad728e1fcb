// A local redis-server child for the zero-config start (ROOMGATE_REDIS_URL unset).
// Loopback only, AOF on, data under <data_dir>/redis, stopped with the gateway. It asks for a
// password (random per data dir, kept in <data_dir>/redis/password with mode 0600): loopback is
// shared by every local user and process, and the queue holds egress jobs.
import crypto from 'node:crypto';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger.ts';

export interface EmbeddedRedis {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export class RedisUnavailableError extends Error {
  override name = 'RedisUnavailableError';
}

function findRedisServer(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/bin', '/usr/sbin', '/usr/local/bin'])) {
    const candidate = path.join(dir, 'redis-server');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** A redis-server left running by a gateway that was killed: same data dir, so it is ours to stop. */
function stopOrphan(pidFile: string, log: Logger): void {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  let cmdline = '';
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return; // not running
  }
  if (!cmdline.includes('redis-server')) return;
  log.warn({ pid }, 'stopping a redis-server left over from an earlier run of this data dir');
  try {
    process.kill(pid, 'SIGTERM');
    execFileSync('sh', ['-c', `for i in $(seq 50); do kill -0 ${pid} 2>/dev/null || exit 0; sleep 0.1; done`]);
  } catch {
    // already gone
  }
}

/** The data dir's Redis password, created on first use (readable by its owner only). */
export function embeddedRedisPassword(dataDir: string): string {
  const dir = path.resolve(dataDir, 'redis');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'password');
  try {
    const existing = fs.readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{64}$/.test(existing)) {
      fs.chmodSync(file, 0o600);
      return existing;
    }
  } catch {
    // not created yet
  }
  const password = crypto.randomBytes(32).toString('hex');
  fs.writeFileSync(file, `${password}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600); // the mode is only applied to a new file
  return password;
}

export async function startEmbeddedRedis(opts: { dataDir: string; port: number; log: Logger }): Promise<EmbeddedRedis> {
  const { port, log } = opts;
  const bin = findRedisServer();
  if (!bin) {
    throw new RedisUnavailableError(
      'Redis is required. Install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) ' +
        'so roomgate can start a local one, or point ROOMGATE_REDIS_URL at a running server (redis://host:6379).',
    );
  }
  const dir = path.resolve(opts.dataDir, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  const pidFile = path.join(dir, 'redis.pid');
  stopOrphan(pidFile, log);
  const password = embeddedRedisPassword(opts.dataDir);

  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--protected-mode', 'yes',
    '--dir', dir,
    '--appendonly', 'yes',
    '--appendfsync', 'everysec',
    '--save', '',
    '--pidfile', pidFile,
    '--daemonize', 'no',
    '--logfile', '',
    // Given on stdin as a config file rather than argv: the command line is visible to all users.
    '-',
  ];
  // Its own process group: Ctrl-C or systemd's SIGTERM to the gateway's group must not stop Redis
  // while the egress worker still writes the results of its draining jobs; the gateway stops it last.
  const child: ChildProcess = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(`requirepass ${password}\n`);
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.once('error', (err) => collect(Buffer.from(String(err))));

  const url = `redis://:${password}@127.0.0.1:${port}`;
  // Wait for the server's own "ready" line rather than probing the port: whatever else listens
  // there would answer the probe.
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000);
    const check = () => {
      if (/Ready to accept connections/.test(output)) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    child.stdout?.on('data', check);
    // Either way the server is gone: stop waiting for its ready line.
    exited.then(
      () => {
        clearTimeout(timer);
        resolve(false);
      },
      () => resolve(false),
    );
  });
  if (!ready) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      throw new RedisUnavailableError(`local redis-server did not become ready within 10 s.\n${output.trim()}`);
    }
    const hint = /Address already in use/.test(output)
      ? ` Port ${port} is taken: set ROOMGATE_REDIS_EMBEDDED_PORT to a free port or ROOMGATE_REDIS_URL to a running Redis.`
      : '';
    throw new RedisUnavailableError(`local redis-server exited at start-up.${hint}\n${output.trim()}`);
  }
  log.info({ url: `redis://127.0.0.1:${port}`, pid: child.pid, dir }, 'started local redis-server (set ROOMGATE_REDIS_URL to use your own)');

  let stopping: Promise<void> | undefined;
  return {
    url,
    pid: child.pid!,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM'); // redis flushes the AOF on SIGTERM
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
        log.info('local redis-server stopped');
      })();
      return stopping;
    },
  };
}
