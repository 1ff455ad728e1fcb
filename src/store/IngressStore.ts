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

  async put(info: IngressInfo): Promise<void> {
    await this.#redis.hset(this.#key, info.ingressId, info.toJsonString());
    const old = this.#byId.get(info.ingressId);
    if (old?.streamKey && old.streamKey !== info.streamKey) this.#byStreamKey.delete(old.streamKey);
    this.#index(info.clone());
  }

  async delete(ingressId: string): Promise<boolean> {
    const removed = (await this.#redis.hdel(this.#key, ingressId)) === 1;
    const old = this.#byId.get(ingressId);
    if (old?.streamKey) this.#byStreamKey.delete(old.streamKey);
    this.#byId.delete(ingressId);
    return removed;
  }
}
