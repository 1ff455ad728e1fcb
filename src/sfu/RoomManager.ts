// Rooms hosted by this node: the registry in Redis (source of truth, survives restarts) and the live
// Room objects with their mediasoup Routers. The Twirp layer talks to it through a narrow interface.
import { Room as RoomInfo, type ParticipantInfo, type TrackInfo } from '@livekit/protocol';
import { TypedEmitter } from '../emitter.ts';
import { ApiError, participantNotFound, roomNotFound, unavailable } from '../errors.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { RoomStore } from '../store/RoomStore.ts';
import { RoomImpl } from './Room.ts';
import type { Room, RoomCloseReason } from './RoomTypes.ts';
import type { WorkerPool } from './WorkerPool.ts';

export interface RoomDefaults {
  /** Seconds a room with nobody in it stays open (LiveKit's empty_timeout). */
  emptyTimeout: number;
  departureTimeout: number;
  maxParticipants: number;
}

export interface CreateRoomOptions {
  name: string;
  emptyTimeout?: number;
  departureTimeout?: number;
  maxParticipants?: number;
  metadata?: string;
}

export type RoomManagerEvents = {
  roomstarted: [room: RoomInfo];
  roomfinished: [room: RoomInfo];
};

export class RoomManager extends TypedEmitter<RoomManagerEvents> {
  readonly #store: RoomStore;
  readonly #pool: WorkerPool;
  readonly #node: string;
  readonly #defaults: RoomDefaults;
  readonly #log: Logger;
  readonly #rooms = new Map<string, Room>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Per-room-name chain, so create/delete/metadata of one room never interleave. */
  readonly #locks = new Map<string, Promise<unknown>>();
  #closed = false;

  constructor(opts: { store: RoomStore; pool: WorkerPool; node: string; defaults: RoomDefaults; log: Logger }) {
    super();
    this.#store = opts.store;
    this.#pool = opts.pool;
    this.#node = opts.node;
    this.#defaults = opts.defaults;
    this.#log = opts.log;
    this.onListenerError((event, err) => this.#log.error({ event, err }, 'room manager listener threw'));
  }

  /** Rooms live in this process (for health and metrics). */
  get activeRooms(): number {
    return this.#rooms.size;
  }

  #serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => {});
    this.#locks.set(name, tail);
    void tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return next;
  }

  /** Re-opens the rooms this node hosted before a restart. */
  async restore(): Promise<void> {
    const stored = await this.#store.list();
    for (const { room, node } of stored) {
      if (node !== this.#node) continue;
      await this.#serial(room.name, () => this.#activate(room));
    }
    this.#log.info({ rooms: this.#rooms.size }, 'rooms restored from Redis');
  }

  /** Creates the room, or returns the existing one unchanged (LiveKit's CreateRoom is idempotent). */
  createRoom(opts: CreateRoomOptions): Promise<RoomInfo> {
    return this.#serial(opts.name, async () => {
      const now = Date.now();
      const candidate = new RoomInfo({
        sid: newId('RM_'),
        name: opts.name,
        emptyTimeout: opts.emptyTimeout || this.#defaults.emptyTimeout,
        departureTimeout: opts.departureTimeout || this.#defaults.departureTimeout,
        maxParticipants: opts.maxParticipants || this.#defaults.maxParticipants,
        metadata: opts.metadata ?? '',
        creationTime: BigInt(Math.floor(now / 1000)),
        creationTimeMs: BigInt(now),
      });
      const { room, node, created } = await this.#store.createIfAbsent({ room: candidate, node: this.#node });
      if (node !== this.#node) return room; // hosted elsewhere; that node owns its media
      const live = this.#rooms.get(room.name) ?? (await this.#activate(room));
      if (created) {
        this.#log.info({ room: room.name, sid: room.sid }, 'room created');
        this.safeEmit('roomstarted', live.info());
      }
      return live.info();
    });
  }

  async listRooms(names: string[] = []): Promise<RoomInfo[]> {
    const stored = await this.#store.list(names);
    return stored.map(({ room }) => this.#rooms.get(room.name)?.info() ?? room);
  }

  async getRoom(name: string): Promise<RoomInfo> {
    const live = this.#rooms.get(name);
    if (live) return live.info();
    const stored = await this.#store.get(name);
    if (!stored) throw roomNotFound(name);
    return stored.room;
  }

  deleteRoom(name: string): Promise<void> {
    return this.#serial(name, () => this.#finish(name, 'deleted'));
  }

  updateRoomMetadata(name: string, metadata: string): Promise<RoomInfo> {
    return this.#serial(name, async () => {
      const stored = await this.#store.get(name);
      if (!stored) throw roomNotFound(name);
      stored.room.metadata = metadata;
      await this.#store.put(stored);
      const live = this.#rooms.get(name);
      live?.setMetadata(metadata);
      return live?.info() ?? stored.room;
    });
  }

  async listParticipants(room: string): Promise<ParticipantInfo[]> {
    const live = this.#rooms.get(room);
    if (live) return live.participants();
    await this.getRoom(room); // not found, or hosted on another node with its own list
    return [];
  }

  async getParticipant(room: string, identity: string): Promise<ParticipantInfo> {
    const found = (await this.listParticipants(room)).find((p) => p.identity === identity);
    if (!found) throw participantNotFound(room, identity);
    return found;
  }

  // Participant operations act on live participants, which join through signaling (rooms issue).
  // Until then every room is empty, so they answer not_found exactly as for an absent participant.
  async removeParticipant(room: string, identity: string): Promise<void> {
    await this.getParticipant(room, identity);
    throw new ApiError('unimplemented', 'participants cannot be removed yet');
  }

  async mutePublishedTrack(room: string, identity: string, _trackSid: string, _muted: boolean): Promise<TrackInfo> {
    await this.getParticipant(room, identity);
    throw new ApiError('unimplemented', 'tracks cannot be muted yet');
  }

  async updateParticipant(room: string, identity: string): Promise<ParticipantInfo> {
    await this.getParticipant(room, identity);
    throw new ApiError('unimplemented', 'participants cannot be updated yet');
  }

  async updateSubscriptions(room: string, identity: string): Promise<void> {
    await this.getParticipant(room, identity);
    throw new ApiError('unimplemented', 'subscriptions cannot be changed yet');
  }

  /** Delivers to the room's participants (none until signaling exists); the room must exist. */
  async sendData(room: string): Promise<{ recipients: number }> {
    const participants = await this.listParticipants(room);
    return { recipients: participants.length };
  }

  async #activate(info: RoomInfo): Promise<Room> {
    if (this.#closed) throw unavailable('gateway is shutting down');
    let router;
    try {
      router = await this.#pool.createRouter({ room: info.name });
    } catch (err) {
      this.#log.error({ room: info.name, err: (err as Error).message }, 'could not create a router for the room');
      throw new ApiError('unavailable', `no media worker available for room '${info.name}'`);
    }
    const room = new RoomImpl({ info, router, log: this.#log });
    this.#rooms.set(info.name, room);
    room.on('@close', (reason) => {
      this.#rooms.delete(info.name);
      this.#clearTimer(info.name);
      // A room that closed by itself (worker died) is finished for its users too; a shutdown is not.
      if (reason === 'worker_died') void this.#serial(info.name, () => this.#finish(info.name, reason));
    });
    this.#armEmptyTimeout(room);
    return room;
  }

  /** Nobody joined: the room ends `empty_timeout` seconds after it was created. */
  #armEmptyTimeout(room: Room): void {
    const info = room.info();
    const deadline = Number(info.creationTimeMs || info.creationTime * 1000n) + info.emptyTimeout * 1000;
    const delay = Math.max(0, deadline - Date.now());
    const timer = setTimeout(() => {
      this.#timers.delete(room.name);
      void this.#serial(room.name, () => this.#finish(room.name, 'empty_timeout')).catch((err: unknown) =>
        this.#log.error({ room: room.name, err: (err as Error).message }, 'could not close empty room'),
      );
    }, delay);
    this.#timers.set(room.name, timer);
  }

  #clearTimer(name: string): void {
    clearTimeout(this.#timers.get(name));
    this.#timers.delete(name);
  }

  async #finish(name: string, reason: RoomCloseReason): Promise<void> {
    const stored = await this.#store.get(name);
    if (!stored) {
      if (reason === 'deleted') throw roomNotFound(name);
      return;
    }
    const live = this.#rooms.get(name);
    const final = live?.info() ?? stored.room;
    live?.close(reason);
    await this.#store.delete(name);
    this.#log.info({ room: name, reason }, 'room finished');
    this.safeEmit('roomfinished', final);
  }

  /** Closes live rooms without deleting them: they come back with the next start. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const name of [...this.#timers.keys()]) this.#clearTimer(name);
    for (const room of [...this.#rooms.values()]) room.close('shutdown');
  }
}
