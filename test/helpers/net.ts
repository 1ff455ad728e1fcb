import fs from 'node:fs';
import net from 'node:net';
import { scaled } from './deadline.ts';

/** A TCP port that was free a moment ago on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns a value; `timeoutMs` is stretched by the machine's load (deadline.ts). */
export async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, baseTimeoutMs = 10_000, what = 'condition'): Promise<T> {
  const timeoutMs = scaled(baseTimeoutMs);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits until some process on this machine has bound `port` (TCP: listening; UDP: bound), read from
 * /proc/net without connecting — a one-shot listener such as `ffmpeg -listen 1` would take a probe
 * connection for its one client.
 */
export function waitForBound(port: number, proto: 'tcp' | 'udp', owner?: { exited: Promise<unknown>; stderrTail(): string }, baseTimeoutMs = 10_000): Promise<true> {
  let gone = false;
  owner?.exited.then(() => (gone = true)).catch(() => undefined);
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const bound = () => {
    for (const table of [`/proc/net/${proto}`, `/proc/net/${proto}6`]) {
      let text = '';
      try {
        text = fs.readFileSync(table, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        // cols[1] is local address:port, cols[3] the state (0A = LISTEN for TCP; UDP sockets stay 07).
        if (cols[1]?.endsWith(hex) && (proto === 'udp' || cols[3] === '0A')) return true;
      }
    }
    if (gone) throw new Error(`the process that was to bind ${proto} port ${port} exited: ${owner!.stderrTail()}`);
    return undefined;
  };
  return waitFor(bound, baseTimeoutMs, `${proto} port ${port} to be bound`);
}
