// Rooms hosted by this node: the registry in Redis (source of truth, survives restarts) and the live
// Room objects with their mediasoup Routers. The Twirp layer talks to it through a narrow interface.
import { Room as RoomInfo, type ParticipantInfo, type ParticipantPermission, type RoomEgress, type TrackInfo } from '@livekit/protocol';
import { KeyedQueue } from '../async.ts';
import { TypedEmitter } from '../emitter.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { RoomStore } from '../store/RoomStore.ts';
import { invalidArgument, participantNotFound, roomNotFound, SfuError, unavailable } from './errors.ts';
import type { Participant } from './Participant.ts';
import type { SignalSink, TransportSettings } from './ParticipantTypes.ts';
import { isDependent, RoomImpl } from './Room.ts';
import type { AutoEgress, JoinRequest, RelayCodec, ResumeRequest, RoomCloseReason } from './RoomTypes.ts';
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
  /**
   * Auto egress, started once when the room is created (never for a room that already exists).
   * Not stored with the room: it has done its work by then, and the egress it started is itself
   * in Redis and survives a restart of the gateway or the worker.
   */
  egress?: RoomEgress | undefined;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export type RoomManagerEvents = {
  roomstarted: [room: RoomInfo];
  roomfinished: [room: RoomInfo];
  participantjoined: [room: RoomInfo, participant: ParticipantInfo];
  participantleft: [room: RoomInfo, participant: ParticipantInfo];
  trackpublished: [room: RoomInfo, participant: ParticipantInfo, track: TrackInfo];
  trackunpublished: [room: RoomInfo, participant: ParticipantInfo, track: TrackInfo];
};

/** Longest empty/departure timeout a request may ask for: a week, as the room.* settings allow. */
export const MAX_ROOM_TIMEOUT_S = 7 * 24 * 3600;
/** Largest max_participants a request may ask for (0 still means no limit). */
export const MAX_ROOM_PARTICIPANTS = 100_000;

/**
 * The uint32 fields of CreateRoom and a token's roomConfig are bounded: 4294967295 s would keep an
 * empty room's record and timer for 136 years. Out of range is refused rather than clamped, so the
 * caller learns the room will not behave as asked.
 */
export function checkRoomLimits(opts: { emptyTimeout?: number; departureTimeout?: number; maxParticipants?: number }): void {
  for (const [field, value] of [['empty_timeout', opts.emptyTimeout], ['departure_timeout', opts.departureTimeout]] as const) {
    if (value !== undefined && value > MAX_ROOM_TIMEOUT_S) {
      throw invalidArgument(`${field} must be at most ${MAX_ROOM_TIMEOUT_S} seconds (7 days), got ${value}`, field);
    }
  }
  if (opts.maxParticipants !== undefined && opts.maxParticipants > MAX_ROOM_PARTICIPANTS) {
    throw invalidArgument(`max_participants must be at most ${MAX_ROOM_PARTICIPANTS} (0 = no limit), got ${opts.maxParticipants}`, 'max_participants');
  }
}

export class RoomManager extends TypedEmitter<RoomManagerEvents> {
  readonly #store: RoomStore;
  readonly #pool: WorkerPool;
  readonly #node: string;
  readonly #defaults: RoomDefaults;
  readonly #log: Logger;
  readonly #rooms = new Map<string, RoomImpl>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Per-room-name queue, so create/delete/metadata of one room never interleave. */
  readonly #locks = new KeyedQueue<string>();
  #closed = false;

  readonly #transport: TransportSettings;
  readonly #codec: RelayCodec;
  readonly #autoEgress: AutoEgress | undefined;

  constructor(opts: {
    store: RoomStore;
    pool: WorkerPool;
    node: string;
    defaults: RoomDefaults;
    transport: TransportSettings;
    /** How the rooms' data channel frames messages for participants without their own DataPath. */
    codec: RelayCodec;
    /** Without it, a room that asks for auto egress is refused (unimplemented). */
    autoEgress?: AutoEgress;
    log: Logger;
  }) {
    super();
    this.#transport = opts.transport;
    this.#codec = opts.codec;
    this.#autoEgress = opts.autoEgress;
    this.#store = opts.store;
    this.#pool = opts.pool;
    this.#node = opts.node;
    this.#defaults = opts.defaults;
    this.#log = opts.log;
    this.onListenerError((event, err) => this.#log.error({ event, err }, 'room manager listener threw'));
  }

  /** The live room of that name on this node, for in-process media (ingress, egress, benchmarks). */
  liveRoom(name: string): RoomImpl | undefined {
    return this.#rooms.get(name);
  }

  /** Rooms live in this process (for health and metrics). */
  get activeRooms(): number {
    return this.#rooms.size;
  }

  /** Participants in the live rooms of this process (metrics). */
  get participantCount(): number {
    let n = 0;
    for (const room of this.#rooms.values()) n += room.participantCount;
    return n;
  }

  #serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(name, fn);
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

  /**
   * Creates the room, or returns the existing one unchanged (LiveKit's CreateRoom is idempotent).
   * An auto egress config is checked either way (a bad one is refused, and no room is created),
   * but only a room created here starts one.
   */
  createRoom(opts: CreateRoomOptions): Promise<RoomInfo> {
    return this.#serial(opts.name, async () => {
      const info = this.#newRoomInfo(opts);
      const startEgress = await this.#prepareEgress(info, opts.egress);
      const { room, node, created } = await this.#store.createIfAbsent({ room: info, node: this.#node });
      if (node !== this.#node) return room; // hosted elsewhere; that node owns its media
      const live = this.#rooms.get(room.name) ?? (await this.#activate(room));
      if (created) await this.#started(live, startEgress);
      return live.info();
    });
  }

  async #prepareEgress(info: RoomInfo, egress: RoomEgress | undefined): Promise<(() => Promise<void>) | undefined> {
    if (!egress || (!egress.room && !egress.participant && !egress.tracks)) return undefined;
    if (!this.#autoEgress) throw new SfuError('unimplemented', 'egress: this gateway has no egress service for auto egress', 'egress');
    return this.#autoEgress.prepare(info, egress);
  }

  /** A room was just created: room_started, then its auto egress, so receivers hear of the room before its recording. */
  async #started(live: RoomImpl, startEgress: (() => Promise<void>) | undefined): Promise<void> {
    this.#log.info({ room: live.name, sid: live.sid }, 'room created');
    this.safeEmit('roomstarted', live.info());
    if (!startEgress) return;
    try {
      await startEgress();
    } catch (err) {
      // The recording could not be queued (Redis away): the room is undone rather than left to run
      // unrecorded, so the caller's retry creates it again and starts the recording then.
      this.#log.error({ room: live.name, err: (err as Error).message }, 'auto egress did not start; the room is removed again');
      await this.#finish(live.name, 'deleted').catch(() => undefined);
      throw err;
    }
  }

  /** A new room's info: the request's settings, the configured defaults for the rest (0 = default). */
  #newRoomInfo(opts: CreateRoomOptions): RoomInfo {
    checkRoomLimits(opts);
    const now = Date.now();
    return new RoomInfo({
      sid: newId('RM_'),
      name: opts.name,
      emptyTimeout: opts.emptyTimeout || this.#defaults.emptyTimeout,
      departureTimeout: opts.departureTimeout || this.#defaults.departureTimeout,
      maxParticipants: opts.maxParticipants || this.#defaults.maxParticipants,
      metadata: opts.metadata ?? '',
      creationTime: BigInt(Math.floor(now / 1000)),
      creationTimeMs: BigInt(now),
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

  /**
   * A live participant and its room. A room that exists (in Redis) but has no live media here has
   * nobody in it, so that is a participant not_found; a room that does not exist is a room not_found.
   */
  async #participant(room: string, identity: string): Promise<{ live: RoomImpl; p: Participant }> {
    const live = this.#rooms.get(room);
    if (!live) {
      await this.getRoom(room);
      throw participantNotFound(room, identity);
    }
    return { live, p: live.participant(identity) };
  }

  async getParticipant(room: string, identity: string): Promise<ParticipantInfo> {
    return (await this.#participant(room, identity)).p.info();
  }

  async removeParticipant(room: string, identity: string): Promise<void> {
    (await this.#participant(room, identity)).p.close('PARTICIPANT_REMOVED');
  }

  async mutePublishedTrack(room: string, identity: string, trackSid: string, muted: boolean): Promise<TrackInfo> {
    return (await this.#participant(room, identity)).p.setTrackMuted(trackSid, muted);
  }

  async updateParticipant(
    room: string,
    identity: string,
    req: { metadata: string; name: string; attributes: Record<string, string>; permission?: ParticipantPermission | undefined },
  ): Promise<ParticipantInfo> {
    const { live, p } = await this.#participant(room, identity);
    if (req.permission) {
      p.setPermission(req.permission);
      live.resubscribe(p);
    }
    p.applyUpdate({ ...(req.metadata ? { metadata: req.metadata } : {}), name: req.name, attributes: req.attributes });
    return p.info();
  }

  async updateSubscriptions(room: string, identity: string, trackSids: string[], subscribe: boolean): Promise<void> {
    const { live, p } = await this.#participant(room, identity);
    for (const sid of trackSids) p.setSubscription(sid, subscribe);
    if (subscribe) live.resubscribe(p);
  }

  /** Delivers to the room's participants through the data relay; the room must exist. */
  async sendData(
    room: string,
    req: { data: Uint8Array; topic?: string | undefined; destinationIdentities: string[]; destinationSids: string[] },
  ): Promise<{ recipients: number }> {
    await this.getRoom(room);
    const live = this.#rooms.get(room);
    if (!live) return { recipients: 0 };
    // destination_sids is LiveKit's deprecated form: resolve it to identities.
    const bySid = live.participants().filter((p) => req.destinationSids.includes(p.sid)).map((p) => p.identity);
    const destinations = [...req.destinationIdentities, ...bySid];
    if (req.destinationSids.length > 0 && destinations.length === 0) return { recipients: 0 };
    return { recipients: live.deliver(req.data, req.topic, destinations) };
  }

  /** A dropped connection comes back: same identity, session still held. */
  resume(req: ResumeRequest, sink: SignalSink): { room: RoomImpl; participant: Participant } | undefined {
    const live = req.room ? this.#rooms.get(req.room) : undefined;
    if (!live || !req.identity) return undefined;
    let participant: Participant;
    try {
      participant = live.participant(req.identity);
    } catch {
      return undefined;
    }
    if (participant.closed) return undefined;
    participant.attach(sink);
    return { room: live, participant };
  }

  /**
   * A participant joins: the room is created if absent (LiveKit's auto-create) with the request's
   * room settings, then the participant is added. Returns the participant and its room.
   */
  join(req: JoinRequest, sink: SignalSink): Promise<{ room: RoomImpl; participant: Participant }> {
    const { room: name, roomSettings, ...who } = req;
    if (!name) throw invalidArgument('a join names no room', 'room');
    if (!who.identity) throw invalidArgument('a join has no identity', 'identity');
    return this.#serial(name, async () => {
      let live = this.#rooms.get(name);
      if (!live) {
        // The settings set up a room this join creates, auto egress included; a bad egress config
        // refuses the join, as it refuses CreateRoom.
        const info = this.#newRoomInfo({ name, ...roomSettings });
        const startEgress = await this.#prepareEgress(info, roomSettings?.egress);
        const stored = await this.#store.createIfAbsent({ room: info, node: this.#node });
        if (stored.node !== this.#node) throw unavailable(`room '${name}' is hosted by node ${stored.node}`);
        live = this.#rooms.get(name) ?? (await this.#activate(stored.room));
        if (stored.created) await this.#started(live, startEgress);
      }
      const participant = live.join(who, sink);
      // Only a participant that keeps the room alive stops its empty/departure timer: an agent that
      // joins an otherwise empty room must not hold it open (LiveKit's dependent participants).
      if (!isDependent(participant.kind)) this.#clearTimer(name);
      return { room: live, participant };
    });
  }

  async #activate(info: RoomInfo): Promise<RoomImpl> {
    if (this.#closed) throw unavailable('gateway is shutting down');
    let router;
    try {
      router = await this.#pool.createRouter({ room: info.name });
    } catch (err) {
      this.#log.error({ room: info.name, err: (err as Error).message }, 'could not create a router for the room');
      throw unavailable(`no media worker available for room '${info.name}'`);
    }
    let room: RoomImpl;
    try {
      const dataRelay = await router.createDirectTransport();
      // 250 ms (mediasoup's least; LiveKit uses 400): the active speaker, and the composite's
      // speaker layout with it, follows a new voice about 0.15 s sooner.
      const audioLevels = await router.createAudioLevelObserver({ maxEntries: 5, threshold: -60, interval: 250 });
      room = new RoomImpl({
        info,
        media: { router, dataRelay, audioLevels },
        transport: this.#transport,
        codec: this.#codec,
        viewerRouter: (mediaCodecs) => this.#pool.createRouter({ whep: true }, mediaCodecs),
        placement: this.#pool,
        log: this.#log,
      });
    } catch (err) {
      router.close();
      throw err;
    }
    this.#rooms.set(info.name, room);
    const current = () => room.info();
    room.on('@participantjoined', (p) => this.safeEmit('participantjoined', current(), p.info()));
    room.on('@participantleft', (p) => {
      this.safeEmit('participantleft', current(), p.info());
      // The last participant that kept the room alive left (agents and egress may remain; they go
      // with the room). A dependent one leaving changes nothing: an empty-timeout timer keeps running.
      if (!isDependent(p.kind) && room.independentCount === 0 && !room.closed) {
        this.#armTimer(room.name, room.info().departureTimeout, 'departure_timeout');
      }
    });
    room.on('@trackpublished', (p, track) => this.safeEmit('trackpublished', current(), p.info(), track));
    room.on('@trackunpublished', (p, track) => this.safeEmit('trackunpublished', current(), p.info(), track));
    room.on('@close', (reason) => {
      this.#rooms.delete(info.name);
      this.#clearTimer(info.name);
      // A room that closed by itself (worker died) is finished for its users too; a shutdown is not.
      if (reason === 'worker_died') {
        void this.#serial(info.name, () => this.#finish(info.name, reason)).catch((err: unknown) =>
          this.#log.error({ room: info.name, err: (err as Error).message }, 'could not finish room after worker death'),
        );
      }
    });
    this.#armEmptyTimeout(room);
    return room;
  }

  #armTimer(name: string, seconds: number, reason: RoomCloseReason): void {
    this.#clearTimer(name);
    const fire = () => {
      this.#timers.delete(name);
      void this.#serial(name, async () => {
        const live = this.#rooms.get(name);
        if (live && live.independentCount > 0) return; // someone joined meanwhile
        await this.#finish(name, reason);
      }).catch((err: unknown) => this.#log.error({ room: name, err: (err as Error).message }, 'could not close room'));
    };
    // setTimeout fires at once beyond 2^31-1 ms (~24.8 days); timeouts are uint32 seconds, so chain.
    const arm = (ms: number) => {
      const step = Math.min(ms, MAX_TIMER_MS);
      this.#timers.set(name, setTimeout(() => (ms > step ? arm(ms - step) : fire()), step));
    };
    arm(seconds * 1000);
  }

  /** Nobody joined: the room ends `empty_timeout` seconds after it was created. */
  #armEmptyTimeout(room: RoomImpl): void {
    const info = room.info();
    const deadline = Number(info.creationTimeMs || info.creationTime * 1000n) + info.emptyTimeout * 1000;
    this.#armTimer(room.name, Math.max(0, deadline - Date.now()) / 1000, 'empty_timeout');
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
