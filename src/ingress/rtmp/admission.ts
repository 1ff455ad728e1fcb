// Who may hold an RTMP connection before its stream key has been checked. Anyone can open the port,
// so pending connections are bounded three ways: a short deadline for the first handshake bytes
// (an idle socket costs a slot for seconds, not the whole publish deadline), a per-address bound,
// and a global pool in which a new connection evicts the oldest pending one rather than being
// turned away. Turning newcomers away is what let 64 idle sockets lock every publisher out; with
// eviction an attacker must keep opening connections faster than a publisher handshakes (tens of
// milliseconds) to delay it, and one address can never hold more than its share of the pool.
import type net from 'node:net';

export interface AdmissionLimits {
  /** Pending connections, all addresses together. */
  maxPending: number;
  /** Pending connections from one address. */
  maxPendingPerIp: number;
  /** Time for the first bytes of the handshake (C0/C1) to arrive. */
  firstBytesMs: number;
  /** Time from connect to an accepted publish. */
  publishMs: number;
}

interface Pending {
  socket: net.Socket;
  ip: string;
  timer: NodeJS.Timeout;
}

export type EvictReason = 'no handshake bytes in time' | 'did not publish in time' | 'pool full' | 'too many from this address';

export class PendingConnections {
  readonly #limits: AdmissionLimits;
  readonly #onEvict: (ip: string, reason: EvictReason) => void;
  /** In arrival order (Map keeps insertion order), so the first entry is the oldest. */
  readonly #pending = new Map<string, Pending>();
  readonly #perIp = new Map<string, number>();

  constructor(limits: AdmissionLimits, onEvict: (ip: string, reason: EvictReason) => void) {
    this.#limits = limits;
    this.#onEvict = onEvict;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** Registers a new connection, making room for it first; it is timed until `accepted` or close. */
  admit(id: string, socket: net.Socket): void {
    const ip = socket.remoteAddress ?? '?';
    if ((this.#perIp.get(ip) ?? 0) >= this.#limits.maxPendingPerIp) this.#evictOldest('too many from this address', ip);
    if (this.#pending.size >= this.#limits.maxPending) this.#evictOldest('pool full');
    const connectedAt = Date.now();
    const entry: Pending = { socket, ip, timer: setTimeout(() => this.#expire(id, 'no handshake bytes in time'), this.#limits.firstBytesMs) };
    this.#pending.set(id, entry);
    this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1);
    socket.once('data', () => {
      const p = this.#pending.get(id);
      if (!p) return;
      clearTimeout(p.timer);
      // The publish deadline counts from connect, not from the first bytes.
      const left = Math.max(0, this.#limits.publishMs - (Date.now() - connectedAt));
      p.timer = setTimeout(() => this.#expire(id, 'did not publish in time'), left);
    });
    socket.once('close', () => this.release(id));
  }

  /** The connection published with a valid key: it no longer counts as pending. */
  release(id: string): void {
    const p = this.#pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.#pending.delete(id);
    const n = (this.#perIp.get(p.ip) ?? 1) - 1;
    if (n > 0) this.#perIp.set(p.ip, n);
    else this.#perIp.delete(p.ip);
  }

  #expire(id: string, reason: EvictReason): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.release(id);
    this.#onEvict(p.ip, reason);
    p.socket.destroy();
  }

  #evictOldest(reason: EvictReason, ip?: string): void {
    for (const [id, p] of this.#pending) {
      if (ip !== undefined && p.ip !== ip) continue;
      this.#expire(id, reason);
      return;
    }
  }

  close(): void {
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    this.#perIp.clear();
  }
}
