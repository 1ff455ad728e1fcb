// Rooms persisted in Redis, so they survive a gateway restart. One hash: room name → {node, room JSON};
// `node` is the gateway node that hosts the room's media.
import { Room } from '@livekit/protocol';
import type { Redis } from 'ioredis';

export interface StoredRoom {
  room: Room;
  node: string;
}

export class RoomStore {
  readonly #redis: Redis;
  readonly #key: string;

  constructor(redis: Redis, prefix = 'roomgate') {
    this.#redis = redis;
    this.#key = `${prefix}:rooms`;
  }

  async get(name: string): Promise<StoredRoom | undefined> {
    const json = await this.#redis.hget(this.#key, name);
    return json ? decode(json) : undefined;
  }

  /** All rooms, or those named (unknown names are skipped), sorted by name. */
  async list(names: string[] = []): Promise<StoredRoom[]> {
    let values: (string | null)[];
    if (names.length > 0) values = await this.#redis.hmget(this.#key, ...names);
    else values = Object.values(await this.#redis.hgetall(this.#key));
    return values
      .filter((v): v is string => typeof v === 'string')
      .map(decode)
      .sort((a, b) => a.room.name.localeCompare(b.room.name));
  }

  /** Stores the room unless one of that name exists; returns the stored room and whether it is new. */
  async createIfAbsent(entry: StoredRoom): Promise<StoredRoom & { created: boolean }> {
    const created = (await this.#redis.hsetnx(this.#key, entry.room.name, encode(entry))) === 1;
    if (created) return { ...entry, created };
    const existing = await this.get(entry.room.name);
    // Deleted between the two calls: try once more rather than report a room that is gone.
    return existing ? { ...existing, created: false } : this.createIfAbsent(entry);
  }

  async put(entry: StoredRoom): Promise<void> {
    await this.#redis.hset(this.#key, entry.room.name, encode(entry));
  }

  async delete(name: string): Promise<boolean> {
    return (await this.#redis.hdel(this.#key, name)) === 1;
  }
}

function encode({ room, node }: StoredRoom): string {
  return JSON.stringify({ node, room: room.toJson() });
}

function decode(json: string): StoredRoom {
  const { node, room } = JSON.parse(json) as { node: string; room: unknown };
  return { node, room: Room.fromJson(room as never, { ignoreUnknownFields: true }) };
}
