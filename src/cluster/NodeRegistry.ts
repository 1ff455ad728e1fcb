// The gateway nodes sharing one Redis. Each node writes its record (id, URL, media IP, load) to a
// key that expires after `ttlMs` and refreshes it every `heartbeatMs`; a node whose key is gone is
// dead. Every node also checks the others on each beat: the first to take a short Redis lock on a
// dead node's name finishes its rooms (`onDead`) and strikes it from the member set. No cluster
// protocol of our own: a key with a TTL, a set and SET NX, all plain Redis.
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';

export interface NodeLoad {
  rooms: number;
  participants: number;
  /** Live mediasoup workers; a node with none cannot host a room. */
  workers: number;
  /** Consumers over all of the node's workers. */
  consumers: number;
}

export interface NodeInfo {
  id: string;
  /** Where the other nodes reach this node's HTTP API and signaling (http://host:port). */
  url: string;
  /** The IP its media (ICE candidates) is announced on. */
  mediaIp: string;
  startedAt: number;
  /** When the record was written (ms since the epoch). */
  at: number;
  load: NodeLoad;
}

export interface NodeRegistryOptions {
  redis: Redis;
  self: Omit<NodeInfo, 'at' | 'load' | 'startedAt'>;
  load: () => NodeLoad;
  heartbeatMs: number;
  ttlMs: number;
  /** Finishes a dead node's rooms; called on one surviving node, under the lock. */
  onDead: (nodeId: string) => Promise<void>;
  log: Logger;
  prefix?: string;
}

/** A node's place in the least-loaded order: participants weigh most, rooms break the ties. */
export function loadScore(load: NodeLoad): number {
  return load.participants + load.rooms;
}

/**
 * The node a new room goes to: the live node with the lowest load score; on a tie the asking node
 * (no hop) and then the lowest id, so the choice is stable. Nodes without a media worker are skipped.
 */
export function pickNode(nodes: NodeInfo[], selfId: string): NodeInfo | undefined {
  const usable = nodes.filter((n) => n.load.workers > 0);
  usable.sort((a, b) => loadScore(a.load) - loadScore(b.load) || Number(b.id === selfId) - Number(a.id === selfId) || a.id.localeCompare(b.id));
  return usable[0];
}

/** A node's record while its heartbeat is current, read by anyone with the Redis (egress workers too). */
export async function readNode(redis: Redis, id: string, prefix = 'roomgate'): Promise<NodeInfo | undefined> {
  const v = await redis.get(`${prefix}:cluster:node:${id}`);
  return v ? (JSON.parse(v) as NodeInfo) : undefined;
}

export class NodeRegistry {
  readonly #o: NodeRegistryOptions;
  readonly #membersKey: string;
  readonly #prefix: string;
  readonly #startedAt = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #closed = false;

  constructor(opts: NodeRegistryOptions) {
    this.#o = opts;
    this.#prefix = `${opts.prefix ?? 'roomgate'}:cluster`;
    this.#membersKey = `${this.#prefix}:nodes`;
  }

  get selfId(): string {
    return this.#o.self.id;
  }

  #nodeKey(id: string): string {
    return `${this.#prefix}:node:${id}`;
  }

  /** Registers this node (the first heartbeat is awaited, so a node that cannot reach Redis does not start). */
  async start(): Promise<void> {
    await this.#beat();
    this.#timer = setInterval(() => {
      // A beat still running (Redis slow) is not stacked on; the next tick tries again.
      this.#beating ??= this.#tick().finally(() => (this.#beating = undefined));
    }, this.#o.heartbeatMs);
  }

  async #tick(): Promise<void> {
    try {
      await this.#beat();
      await this.#reapDead();
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, 'cluster heartbeat failed');
    }
  }

  async #beat(): Promise<void> {
    const info: NodeInfo = { ...this.#o.self, startedAt: this.#startedAt, at: Date.now(), load: this.#o.load() };
    await this.#o.redis.multi().set(this.#nodeKey(info.id), JSON.stringify(info), 'PX', this.#o.ttlMs).sadd(this.#membersKey, info.id).exec();
  }

  /** The nodes whose heartbeat is current. */
  async live(): Promise<NodeInfo[]> {
    const ids = await this.#o.redis.smembers(this.#membersKey);
    if (ids.length === 0) return [];
    const values = await this.#o.redis.mget(ids.map((id) => this.#nodeKey(id)));
    return values.filter((v): v is string => typeof v === 'string').map((v) => JSON.parse(v) as NodeInfo);
  }

  /** The node's record while it is alive. */
  get(id: string): Promise<NodeInfo | undefined> {
    return readNode(this.#o.redis, id, this.#o.prefix);
  }

  async #reapDead(): Promise<void> {
    const ids = await this.#o.redis.smembers(this.#membersKey);
    const others = ids.filter((id) => id !== this.selfId);
    if (others.length === 0) return;
    const values = await this.#o.redis.mget(others.map((id) => this.#nodeKey(id)));
    for (const [i, id] of others.entries()) {
      if (values[i] !== null || this.#closed) continue;
      // One survivor reaps; the lock outlives a slow reap's retry window but not a crashed reaper for long.
      const lock = await this.#o.redis.set(`${this.#prefix}:reap:${id}`, this.selfId, 'PX', this.#o.ttlMs, 'NX');
      if (lock !== 'OK') continue;
      this.#o.log.warn({ deadNode: id }, 'node heartbeat lapsed; finishing its rooms');
      await this.#o.onDead(id);
      // Struck off only when its rooms are finished; a failed reap is retried by whoever next takes the lock.
      // A node that restarts under the same id re-adds itself with its first beat.
      if ((await this.#o.redis.exists(this.#nodeKey(id))) === 0) await this.#o.redis.srem(this.#membersKey, id);
    }
  }

  /**
   * Stops the heartbeat and deletes this node's record, so the survivors finish its rooms at their
   * next beat instead of after the TTL (its participants were told SERVER_SHUTDOWN already).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#beating;
    await this.#o.redis.del(this.#nodeKey(this.selfId)).catch(() => undefined);
  }
}
