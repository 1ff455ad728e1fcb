// Ingress definitions in Redis (they survive restarts), plus an in-memory index by stream key so an
// RTMP/WHIP publisher can be accepted or refused synchronously, without a Redis round trip.
// Hash `ingress`: ingress id → IngressInfo JSON. Stream keys are unique by construction (CSPRNG).
import { IngressInfo } from '@livekit/protocol';
import type { Redis } from 'ioredis';

export class IngressStore {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #byId = new Map<string, IngressInfo>();
  readonly #byStreamKey = new Map<string, string>();
  #onWrite: ((ingressId: string) => void) | undefined;

  constructor(redis: Redis, prefix = 'roomgate') {
    this.#redis = redis;
    this.#key = `${prefix}:ingress`;
  }

  /** Loads every definition into the index (at start-up). */
  async load(): Promise<number> {
    const all = await this.#redis.hgetall(this.#key);
    this.#byId.clear();
    this.#byStreamKey.clear();
    for (const json of Object.values(all)) this.#index(IngressInfo.fromJsonString(json, { ignoreUnknownFields: true }));
    return this.#byId.size;
  }

  /** Called after each write reached Redis (several nodes: the others re-read that ingress). */
  onWrite(fn: (ingressId: string) => void): void {
    this.#onWrite = fn;
  }

  /** Re-reads one definition from Redis into the index: another node wrote it. */
  async refresh(ingressId: string): Promise<void> {
    const json = await this.#redis.hget(this.#key, ingressId);
    this.#unindex(this.#byId.get(ingressId));
    if (json) this.#index(IngressInfo.fromJsonString(json, { ignoreUnknownFields: true }));
  }

  #index(info: IngressInfo): void {
    this.#byId.set(info.ingressId, info);
    if (info.streamKey) this.#byStreamKey.set(info.streamKey, info.ingressId);
  }

  /** Synchronous lookup for the ingest servers. */
  byStreamKey(streamKey: string): IngressInfo | undefined {
    const id = this.#byStreamKey.get(streamKey);
    return id ? this.#byId.get(id)?.clone() : undefined;
  }

  get(ingressId: string): IngressInfo | undefined {
    return this.#byId.get(ingressId)?.clone();
  }

  list(filter: { roomName?: string; ingressId?: string } = {}): IngressInfo[] {
    return [...this.#byId.values()]
      .filter((i) => (!filter.roomName || i.roomName === filter.roomName) && (!filter.ingressId || i.ingressId === filter.ingressId))
      .sort((a, b) => a.ingressId.localeCompare(b.ingressId))
      .map((i) => i.clone());
  }

  /**
   * The index changes at once and Redis follows, so a lookup or a state write that runs while the
   * command is in flight already sees the change (a deleted ingress is never written back).
   */
  async put(info: IngressInfo): Promise<void> {
    const old = this.#byId.get(info.ingressId);
    this.#unindex(old);
    this.#index(info.clone());
    try {
      await this.#redis.hset(this.#key, info.ingressId, info.toJsonString());
    } catch (err) {
      this.#unindex(this.#byId.get(info.ingressId));
      if (old) this.#index(old);
      throw err;
    }
    this.#onWrite?.(info.ingressId);
  }

  #unindex(info: IngressInfo | undefined): void {
    if (!info) return;
    this.#byId.delete(info.ingressId);
    if (info.streamKey && this.#byStreamKey.get(info.streamKey) === info.ingressId) this.#byStreamKey.delete(info.streamKey);
  }

  async delete(ingressId: string): Promise<boolean> {
    const old = this.#byId.get(ingressId);
    this.#unindex(old);
    try {
      const deleted = (await this.#redis.hdel(this.#key, ingressId)) === 1;
      if (deleted) this.#onWrite?.(ingressId);
      return deleted || old !== undefined;
    } catch (err) {
      if (old && !this.#byId.has(ingressId)) this.#index(old);
      throw err;
    }
  }
}
