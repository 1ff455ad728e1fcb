// SIP trunks and dispatch rules in Redis (they survive restarts), with an in-memory copy so the SIP
// listener matches an INVITE synchronously. Hashes `sip:inbound`, `sip:outbound`, `sip:rules`:
// id → message JSON. Writes go to the copy first and Redis follows (as IngressStore does).
import { SIPDispatchRuleInfo, SIPInboundTrunkInfo, SIPOutboundTrunkInfo } from '@livekit/protocol';
import type { Message, MessageType } from '@bufbuild/protobuf';
import type { Redis } from 'ioredis';

class Table<T extends Message<T>> {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #type: MessageType<T>;
  readonly #id: (item: T) => string;
  readonly #items = new Map<string, T>();

  constructor(redis: Redis, key: string, type: MessageType<T>, id: (item: T) => string) {
    this.#redis = redis;
    this.#key = key;
    this.#type = type;
    this.#id = id;
  }

  async load(): Promise<void> {
    const all = await this.#redis.hgetall(this.#key);
    this.#items.clear();
    for (const json of Object.values(all)) {
      const item = this.#type.fromJsonString(json, { ignoreUnknownFields: true });
      this.#items.set(this.#id(item), item);
    }
  }

  get(id: string): T | undefined {
    return this.#items.get(id)?.clone();
  }

  list(): T[] {
    return [...this.#items.values()].sort((a, b) => this.#id(a).localeCompare(this.#id(b))).map((i) => i.clone());
  }

  async put(item: T): Promise<void> {
    const id = this.#id(item);
    const old = this.#items.get(id);
    this.#items.set(id, item.clone());
    try {
      await this.#redis.hset(this.#key, id, item.toJsonString());
    } catch (err) {
      if (old) this.#items.set(id, old);
      else this.#items.delete(id);
      throw err;
    }
  }

  async delete(id: string): Promise<void> {
    const old = this.#items.get(id);
    this.#items.delete(id);
    try {
      await this.#redis.hdel(this.#key, id);
    } catch (err) {
      if (old) this.#items.set(id, old);
      throw err;
    }
  }
}

export class SipStore {
  readonly inbound: Table<SIPInboundTrunkInfo>;
  readonly outbound: Table<SIPOutboundTrunkInfo>;
  readonly rules: Table<SIPDispatchRuleInfo>;

  constructor(redis: Redis, prefix = 'roomgate') {
    this.inbound = new Table(redis, `${prefix}:sip:inbound`, SIPInboundTrunkInfo, (t) => t.sipTrunkId);
    this.outbound = new Table(redis, `${prefix}:sip:outbound`, SIPOutboundTrunkInfo, (t) => t.sipTrunkId);
    this.rules = new Table(redis, `${prefix}:sip:rules`, SIPDispatchRuleInfo, (r) => r.sipDispatchRuleId);
  }

  async load(): Promise<void> {
    await Promise.all([this.inbound.load(), this.outbound.load(), this.rules.load()]);
  }
}

export type { Table as SipTable };
