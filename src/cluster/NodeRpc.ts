// Request/reply between gateway nodes over Redis pub/sub: each node subscribes to its own channel;
// a request carries a correlation id and the caller's node id, and the answer is published to the
// caller's channel. A call that nobody receives (PUBLISH counts no subscriber) fails at once, one
// that gets no answer fails after the timeout; both as `unavailable`. An ApiError thrown by the
// handler travels back with its code, so the caller's edge answers exactly what the owner would.
import type { Redis } from 'ioredis';
import { ApiError, type TwirpCode } from '../errors.ts';
import { newSecret } from '../ids.ts';
import type { Logger } from '../logger.ts';
import { decodeValue, encodeValue } from './codec.ts';

type Envelope =
  | { t: 'cast'; from: string; topic: string; data: string }
  | { t: 'req'; id: string; from: string; method: string; args: unknown }
  | { t: 'res'; id: string; ok: true; value: unknown }
  | { t: 'res'; id: string; ok: false; error: { code: TwirpCode; msg: string; meta: Record<string, string> } };

export type RpcHandler = (method: string, args: unknown[]) => Promise<unknown>;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class NodeRpc {
  readonly #redis: Redis;
  readonly #selfId: string;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #pending = new Map<string, Pending>();
  #sub: Redis | undefined;
  #handler: RpcHandler | undefined;
  #closed = false;

  constructor(opts: { redis: Redis; selfId: string; timeoutMs: number; log: Logger; prefix?: string }) {
    this.#redis = opts.redis;
    this.#selfId = opts.selfId;
    this.#timeoutMs = opts.timeoutMs;
    this.#log = opts.log;
    this.#prefix = `${opts.prefix ?? 'roomgate'}:cluster:rpc`;
  }

  readonly #casts = new Map<string, (data: string) => void>();

  #channel(node: string): string {
    return `${this.#prefix}:${node}`;
  }

  /** Every node's channel for broadcasts (this node's own are not delivered back to it). */
  get #castChannel(): string {
    return `${this.#prefix}:*all`;
  }

  /** Tells every other node `data` on `topic` (fire and forget: a node that misses it catches up at its next start). */
  broadcast(topic: string, data: string): void {
    const msg: Envelope = { t: 'cast', from: this.#selfId, topic, data };
    this.#redis.publish(this.#castChannel, JSON.stringify(msg)).catch((err: unknown) => this.#log.warn({ topic, err: (err as Error).message }, 'broadcast failed'));
  }

  onBroadcast(topic: string, fn: (data: string) => void): void {
    this.#casts.set(topic, fn);
  }

  /** Subscribes to this node's channel; requests go to `handler`. */
  async start(handler: RpcHandler): Promise<void> {
    this.#handler = handler;
    // A subscribed connection can run nothing else; its own, so the main one keeps serving commands.
    const sub = this.#redis.duplicate({ connectionName: `roomgate-rpc-${this.#selfId}`, lazyConnect: true });
    sub.on('error', () => {});
    this.#sub = sub;
    sub.on('message', (_channel: string, text: string) => this.#receive(text));
    await sub.connect();
    await sub.subscribe(this.#channel(this.#selfId), this.#castChannel);
  }

  /** Calls `method` on node `node`; resolves with its decoded answer, or rejects with its ApiError. */
  async call(node: string, method: string, args: unknown[]): Promise<unknown> {
    if (this.#closed) throw new ApiError('unavailable', 'gateway is shutting down');
    const id = newSecret(64);
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ApiError('unavailable', `node ${node} did not answer ${method} within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
    });
    const req: Envelope = { t: 'req', id, from: this.#selfId, method, args: encodeValue(args) };
    let receivers: number;
    try {
      receivers = await this.#redis.publish(this.#channel(node), JSON.stringify(req));
    } catch (err) {
      this.#settle(id)?.reject(err as Error);
      return answer;
    }
    if (receivers === 0) this.#settle(id)?.reject(new ApiError('unavailable', `node ${node} is not running (no node listens on its channel)`));
    return answer;
  }

  #settle(id: string): Pending | undefined {
    const p = this.#pending.get(id);
    if (!p) return undefined;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    return p;
  }

  #receive(text: string): void {
    let msg: Envelope;
    try {
      msg = JSON.parse(text) as Envelope;
    } catch {
      this.#log.warn('unreadable message on the node channel');
      return;
    }
    if (msg.t === 'cast') {
      if (msg.from !== this.#selfId) this.#casts.get(msg.topic)?.(msg.data);
      return;
    }
    if (msg.t === 'res') {
      const p = this.#settle(msg.id);
      if (!p) return; // timed out already
      if (msg.ok) {
        try {
          p.resolve(decodeValue(msg.value));
        } catch (err) {
          p.reject(err as Error);
        }
      } else p.reject(new ApiError(msg.error.code, msg.error.msg, msg.error.meta));
      return;
    }
    void this.#serve(msg).catch((err: unknown) => this.#log.error({ err, method: msg.method }, 'could not answer a forwarded call'));
  }

  async #serve(req: Extract<Envelope, { t: 'req' }>): Promise<void> {
    let reply: Envelope;
    try {
      const args = decodeValue(req.args);
      if (!Array.isArray(args) || !this.#handler) throw new ApiError('malformed', 'a forwarded call without arguments');
      reply = { t: 'res', id: req.id, ok: true, value: encodeValue(await this.#handler(req.method, args)) };
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : new ApiError('internal', 'internal error');
      if (!(err instanceof ApiError)) this.#log.error({ err, method: req.method }, 'forwarded call failed');
      reply = { t: 'res', id: req.id, ok: false, error: apiErr.toJSON() };
    }
    await this.#redis.publish(this.#channel(req.from), JSON.stringify(reply));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(new ApiError('unavailable', 'gateway is shutting down'));
    const sub = this.#sub;
    if (sub) await sub.quit().catch(() => sub.disconnect());
  }
}
