// Gateway side of egress media: a worker asks (internal HTTP API, Bearer = the workers' own
// credential, egress.worker_secret; a client token, even with roomRecord, is refused) for the
// tracks of its source, gets each codec, starts FFmpeg on its own UDP ports, then has the gateway
// connect PlainTransport consumers to them and ask for a keyframe. A session exists only for a live
// egress job (its record STARTING or ACTIVE, the room and source the job's), and RTP goes only to
// the workers' configured RTP hosts. A session is a lease: without a keepalive for LEASE_MS it
// closes, so a killed worker stops receiving RTP (and its orphaned FFmpeg times out). When the
// source's tracks change (republish, leave/rejoin, producer replaced) the session's `version` moves
// on and the worker re-attaches.
// A server-fed video track (RTMP/URL ingress) is sent from the gateway's keyframe cache instead of a
// consumer (src/egress/relayFeed.ts): its source cannot answer a keyframe request. Each track names
// the address its RTP comes from, so the worker accepts nothing else.
import type { IncomingMessage, ServerResponse } from 'node:http';
import net, { BlockList } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { EgressStatus, TrackSource } from '@livekit/protocol';
import { z } from 'zod';
import { isWorkerSecret } from '../auth/workerCredential.ts';
import { ApiError } from '../errors.ts';
import { newSecret } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { RtpSend } from '../media/rtpSend.ts';
import { relayOf } from '../media/rtpRelay.ts';
import { RelayFeed } from './relayFeed.ts';
import type { Participant, PublishedTrack } from '../sfu/Participant.ts';
import type { RoomImpl } from '../sfu/Room.ts';
import type { RoomManager } from '../sfu/RoomManager.ts';
import { ConnectSchema, EGRESS_INTERNAL_PATH, OpenSchema, SnapshotSchema, SourceSchema, type EgressSource, type KeepaliveResult, type OpenResult, type TapTrack } from './contract.ts';
import { bearerToken, pathSegments, readBody, sendJson } from '../http/body.ts';
import { Router } from '../http/router.ts';
import type { EgressQueue } from './EgressQueue.ts';
import type { EgressStore } from './EgressStore.ts';
import type { EgressRoomLookup } from './request.ts';
import { RoomSnapshots } from './composite/roomSnapshot.ts';

// The protocol itself lives in the contract the worker shares; main.ts mounts the path from here.
export { EGRESS_INTERNAL_PATH };
const LEASE_MS = 10_000;

/** What the taps know of egress jobs (the egress store and queue behind it). */
export interface EgressJobs {
  /** The room and source of a job whose record is STARTING or ACTIVE; undefined for any other. */
  live(egressId: string): Promise<{ roomName: string; source: EgressSource } | undefined>;
}

/** A worker asks for what its job records: the job's kind and, but for a composite's per-run tracks, its exact source. */
function sameSource(job: EgressSource, asked: EgressSource): boolean {
  if (job.kind !== asked.kind) return false;
  // A room composite names the tracks of each compositor run itself (any track of the job's room).
  if (job.kind === 'room_composite') return true;
  const a = SourceSchema.safeParse(job);
  const b = SourceSchema.safeParse(asked);
  return a.success && b.success && isDeepStrictEqual(a.data, b.data);
}

interface Session {
  id: string;
  egressId: string;
  room: RoomImpl;
  source: EgressSource;
  sends: Map<string, RtpSend>;
  feeds: Map<string, RelayFeed>;
  version: number;
  lastSeen: number;
  detach: () => void;
}

/** Which published tracks a source records right now. */
function selectTracks(room: RoomImpl, source: EgressSource): { tracks: PublishedTrack[]; waiting?: string; ended?: string } {
  const participant = (identity: string): Participant | undefined => {
    try {
      return room.participant(identity);
    } catch {
      return undefined;
    }
  };
  const findSid = (sid: string): PublishedTrack | undefined => {
    for (const info of room.participants()) {
      const t = participant(info.identity)?.track(sid);
      if (t) return t;
    }
    return undefined;
  };
  const ofKind = (p: Participant, kind: 'audio' | 'video', preferred: TrackSource) => {
    const all = p.tracks.filter((t) => t.producer.kind === kind && !t.producer.closed);
    return all.find((t) => t.info.source === preferred) ?? all.find((t) => t.info.source !== TrackSource.SCREEN_SHARE && t.info.source !== TrackSource.SCREEN_SHARE_AUDIO) ?? (all.length === 1 ? all[0] : undefined);
  };
  if (source.kind === 'track') {
    const t = findSid(source.trackId);
    return t ? { tracks: [t] } : { tracks: [], ended: `track '${source.trackId}' is no longer published` };
  }
  if (source.kind === 'room_composite') {
    // The worker names what one compositor run consumes; a track gone since shows in its next snapshot.
    return { tracks: source.trackSids.map(findSid).filter((t): t is PublishedTrack => t !== undefined && !t.producer.closed) };
  }
  const p = participant(source.identity);
  if (source.kind === 'participant') {
    if (!p) return { tracks: [], waiting: `participant '${source.identity}' is not in the room` };
    const video = ofKind(p, 'video', source.screenShare ? TrackSource.SCREEN_SHARE : TrackSource.CAMERA);
    const audio = ofKind(p, 'audio', source.screenShare ? TrackSource.SCREEN_SHARE_AUDIO : TrackSource.MICROPHONE);
    const tracks = [video, audio].filter((t): t is PublishedTrack => t !== undefined);
    return tracks.length > 0 ? { tracks } : { tracks, waiting: `participant '${source.identity}' publishes no track` };
  }
  // Track composite: the named tracks, or the owner's republished track of the same kind.
  const pick = (sid: string | undefined, kind: 'audio' | 'video') => {
    if (!sid) return undefined;
    return findSid(sid) ?? (p ? ofKind(p, kind, kind === 'audio' ? TrackSource.MICROPHONE : TrackSource.CAMERA) : undefined);
  };
  const tracks = [pick(source.videoTrackId, 'video'), pick(source.audioTrackId, 'audio')].filter((t): t is PublishedTrack => t !== undefined);
  return tracks.length > 0 ? { tracks } : { tracks, waiting: `the tracks of '${source.identity}' are not published` };
}

export class EgressTaps {
  readonly #rooms: RoomManager;
  readonly #jobs: EgressJobs;
  readonly #workerSecret: string;
  readonly #rtpHosts = new BlockList();
  readonly #maxSessions: number;
  readonly #listenIp: string;
  readonly #log: Logger;
  readonly #sessions = new Map<string, Session>();
  readonly #snapshots: RoomSnapshots;
  readonly #sweep: NodeJS.Timeout;
  /** The internal API under EGRESS_INTERNAL_PATH; each handler answers with the JSON it returns. */
  readonly #routes = new Router<TapRequest>()
    .add('POST', 'open', (_, r) => this.open(r.parse(OpenSchema)))
    // Room composite: the room as its layout sees it (src/egress/composite/roomSnapshot.ts).
    .add('POST', 'room/:room', async ({ room }, r) => {
      const body = r.parse(SnapshotSchema);
      await this.#liveJob(body.egressId, room!, true);
      return this.#snapshots.snapshot(room!, body.roomId);
    })
    .add('DELETE', ':id', ({ id }) => {
      this.closeSession(id!);
      return {};
    })
    .add(['POST', 'DELETE'], ':id/connect', async ({ id }, r) => {
      await this.connect(id!, r.parse(ConnectSchema));
      return {};
    })
    .add(['POST', 'DELETE'], ':id/keepalive', ({ id }) => this.keepalive(id!))
    .add(['POST', 'DELETE'], ':id/keyframe', async ({ id }) => {
      await this.keyframe(id!);
      return {};
    });
  #closed = false;

  constructor(opts: { rooms: RoomManager; jobs: EgressJobs; workerSecret: string; rtpHosts: string[]; maxSessions: number; listenIp: string; log: Logger }) {
    this.#rooms = opts.rooms;
    this.#jobs = opts.jobs;
    this.#workerSecret = opts.workerSecret;
    for (const host of opts.rtpHosts) {
      const [address = '', prefix] = host.split('/');
      const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
      if (prefix !== undefined) this.#rtpHosts.addSubnet(address, Number(prefix), family);
      else this.#rtpHosts.addAddress(address, family);
    }
    this.#maxSessions = opts.maxSessions;
    this.#listenIp = opts.listenIp === '0.0.0.0' ? '127.0.0.1' : opts.listenIp;
    this.#log = opts.log;
    this.#snapshots = new RoomSnapshots(opts.rooms);
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const s of this.#sessions.values()) {
        if (now - s.lastSeen > LEASE_MS) {
          this.#log.warn({ egress: s.egressId, session: s.id }, 'egress worker stopped renewing; closing its consumers');
          this.#closeSession(s);
        }
      }
    }, 2000);
    this.#sweep.unref();
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Live jobs seen by the snapshot route in the last second (a composite polls 10×/s). */
  readonly #recentlyLive = new Map<string, { at: number; job: { roomName: string; source: EgressSource } }>();

  /** The live job `egressId` names, which must be in `roomName`; `reuse`: an answer up to a second old will do. */
  async #liveJob(egressId: string, roomName: string, reuse = false): Promise<{ roomName: string; source: EgressSource }> {
    const hit = reuse ? this.#recentlyLive.get(egressId) : undefined;
    const job = hit && Date.now() - hit.at < 1000 ? hit.job : await this.#jobs.live(egressId);
    if (reuse && job && job !== hit?.job) {
      if (this.#recentlyLive.size > 10_000) this.#recentlyLive.clear();
      this.#recentlyLive.set(egressId, { at: Date.now(), job });
    }
    if (!job) throw new ApiError('failed_precondition', `egress '${egressId.slice(0, 40)}' is not a live egress job (unknown, or no longer STARTING/ACTIVE)`);
    if (job.roomName !== roomName) throw new ApiError('permission_denied', `egress '${egressId}' records room '${job.roomName}', not '${roomName.slice(0, 200)}'`);
    return job;
  }

  async open(req: z.infer<typeof OpenSchema>): Promise<OpenResult> {
    const job = await this.#liveJob(req.egressId, req.room);
    if (!sameSource(job.source, req.source)) throw new ApiError('permission_denied', `egress '${req.egressId}' records another source than the one asked for`);
    if (this.#sessions.size >= this.#maxSessions) {
      throw new ApiError('resource_exhausted', `the gateway holds at most ${this.#maxSessions} egress tap sessions (egress.max_tap_sessions)`);
    }
    const room = this.#rooms.liveRoom(req.room);
    if (!room || room.closed) {
      const exists = await this.#rooms.getRoom(req.room).then(() => true, () => false);
      return exists ? { state: 'waiting', reason: `room '${req.room}' has nobody in it` } : { state: 'ended', reason: `room '${req.room}' was closed` };
    }
    const sel = selectTracks(room, req.source);
    if (sel.ended) return { state: 'ended', reason: sel.ended };
    if (sel.waiting) return { state: 'waiting', reason: sel.waiting };
    const session: Session = {
      id: newSecret(96),
      egressId: req.egressId,
      room,
      source: req.source,
      sends: new Map(),
      feeds: new Map(),
      version: 0,
      lastSeen: Date.now(),
      detach: () => undefined,
    };
    const tracks: TapTrack[] = [];
    try {
      for (const t of sel.tracks) {
        const send = await room.openTap(t, this.#listenIp);
        session.sends.set(t.info.sid, send);
        // Producer replaced or closed: the worker re-attaches to whatever the source has then.
        send.consumer.observer.once('close', () => this.#bump(session));
        const relay = t.producer.kind === 'video' ? relayOf(t.producer) : undefined;
        let from = { ip: send.transport.tuple.localIp, port: send.transport.tuple.localPort, rtcpPort: send.transport.rtcpTuple?.localPort ?? send.transport.tuple.localPort };
        if (relay) {
          const feed = await RelayFeed.open(this.#listenIp, relay, send.codec.payloadType, send.consumer.rtpParameters.encodings?.[0]?.ssrc ?? 1);
          session.feeds.set(t.info.sid, feed);
          from = { ip: this.#listenIp, port: feed.port, rtcpPort: feed.port };
        }
        tracks.push({ trackSid: t.info.sid, identity: t.ownerIdentity, kind: t.producer.kind, codec: send.codec, from, cached: relay !== undefined });
      }
    } catch (err) {
      for (const s of session.sends.values()) s.close();
      for (const f of session.feeds.values()) f.close();
      throw err;
    }
    const owner = 'identity' in req.source ? req.source.identity : undefined;
    const onTrack = (p: Participant) => {
      if (p.identity === owner) this.#bump(session);
    };
    const onClose = () => this.#bump(session);
    room.on('@trackpublished', onTrack);
    room.on('@trackunpublished', onTrack);
    room.on('@participantleft', onTrack);
    room.on('@close', onClose);
    session.detach = () => {
      room.off('@trackpublished', onTrack);
      room.off('@trackunpublished', onTrack);
      room.off('@participantleft', onTrack);
      room.off('@close', onClose);
    };
    this.#sessions.set(session.id, session);
    this.#log.debug({ egress: req.egressId, session: session.id, tracks: tracks.map((t) => t.trackSid), cached: tracks.filter((t) => t.cached).map((t) => t.trackSid) }, 'egress tap opened');
    return { state: 'ready', sessionId: session.id, version: session.version, tracks };
  }

  #bump(session: Session): void {
    session.version++;
  }

  #session(id: string): Session {
    const s = this.#sessions.get(id);
    if (!s) throw new ApiError('not_found', `egress tap session '${id.slice(0, 8)}…' does not exist (expired or closed)`);
    s.lastSeen = Date.now();
    return s;
  }

  async connect(id: string, req: z.infer<typeof ConnectSchema>): Promise<void> {
    const s = this.#session(id);
    for (const target of req.targets) {
      // Media goes to the workers' hosts only, never to an address a caller picks.
      const family = net.isIPv4(target.ip) ? 'ipv4' : net.isIPv6(target.ip) ? 'ipv6' : undefined;
      if (!family || !this.#rtpHosts.check(target.ip, family)) throw new ApiError('permission_denied', `RTP target '${target.ip.slice(0, 64)}' is not an egress worker RTP host (egress.rtp_host, egress.worker_rtp_hosts)`);
    }
    for (const target of req.targets) {
      const send = s.sends.get(target.trackSid);
      if (!send) throw new ApiError('invalid_argument', `track '${target.trackSid}' is not part of this session`);
      const feed = s.feeds.get(target.trackSid);
      if (feed) feed.start(target, req.replay);
      else await send.start(target);
    }
  }

  /** `gone`: a consumed track was unpublished (its consumer closed). */
  keepalive(id: string): KeepaliveResult {
    const s = this.#session(id);
    return { version: s.version, gone: [...s.sends.values()].some((send) => send.consumer.closed) };
  }

  async keyframe(id: string): Promise<void> {
    const s = this.#session(id);
    for (const [sid, send] of s.sends) {
      if (send.consumer.kind === 'video' && !send.consumer.closed && !s.feeds.has(sid)) await send.consumer.requestKeyFrame().catch(() => undefined);
    }
  }

  closeSession(id: string): void {
    const s = this.#sessions.get(id);
    if (s) this.#closeSession(s);
  }

  #closeSession(s: Session): void {
    if (!this.#sessions.delete(s.id)) return;
    s.detach();
    for (const send of s.sends.values()) send.close();
    for (const feed of s.feeds.values()) feed.close();
  }

  /** Ends every tap session and stops the sweep. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const s of [...this.#sessions.values()]) this.#closeSession(s);
    return Promise.resolve();
  }

  /** HTTP under EGRESS_INTERNAL_PATH; answers every request itself. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      if (req.method !== 'POST' && req.method !== 'DELETE') throw new ApiError('bad_route', `unsupported method ${req.method}`);
      const presented = bearerToken(req);
      if (!presented) throw new ApiError('unauthenticated', 'missing credential: Authorization: Bearer <egress worker secret>');
      if (!isWorkerSecret(presented, this.#workerSecret)) throw new ApiError('unauthenticated', 'the internal egress API takes the egress workers\' credential (egress.worker_secret), not an access token');
      const rest = pathSegments(url.pathname, EGRESS_INTERNAL_PATH);
      const body = req.method === 'POST' ? await readBody(req, 64 * 1024) : Buffer.alloc(0);
      const json = (): unknown => {
        try {
          return body.length ? JSON.parse(body.toString('utf8')) : {};
        } catch {
          throw new ApiError('malformed', 'body is not JSON');
        }
      };
      const parse = <T>(schema: z.ZodType<T>): T => {
        const r = schema.safeParse(json());
        if (!r.success) throw new ApiError('invalid_argument', r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
        return r.data;
      };
      const route = this.#routes.match(req.method, rest);
      if (route) return sendJson(res, 200, await route.handle(route.params, { parse }));
      throw new ApiError('bad_route', `no such route: ${req.method} ${url.pathname}`);
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : new ApiError('internal', (err as Error).message);
      if (apiErr.status >= 500) this.#log.error({ err }, 'egress tap request failed');
      sendJson(res, apiErr.status, apiErr.toJSON());
    }
  }
}

/** What a route handler of the internal API gets besides the path's values: the body, checked. */
interface TapRequest {
  parse<T>(schema: z.ZodType<T>): T;
}

/** A job is live while its record is STARTING or ACTIVE; its room and source are the queued job's. */
export function liveEgressJobs(store: EgressStore, queue: Pick<EgressQueue, 'job'>): EgressJobs {
  return {
    async live(egressId) {
      const info = await store.get(egressId);
      if (!info || (info.status !== EgressStatus.EGRESS_STARTING && info.status !== EgressStatus.EGRESS_ACTIVE)) return undefined;
      const job = await queue.job(egressId);
      const source = SourceSchema.safeParse(job?.data.source);
      if (!job || !source.success || job.data.roomName !== info.roomName) return undefined;
      return { roomName: job.data.roomName, source: source.data };
    },
  };
}

/** What the Egress API asks of the rooms (request validation). */
export function egressRoomLookup(rooms: RoomManager): EgressRoomLookup {
  return {
    // Only "no such room" means undefined; a Redis outage must surface as `unavailable`.
    async roomSid(name) {
      try {
        return (await rooms.getRoom(name)).sid;
      } catch (err) {
        if (err instanceof ApiError && err.code === 'not_found') return undefined;
        throw err;
      }
    },
    track(roomName, sid) {
      const room = rooms.liveRoom(roomName);
      if (!room) return undefined;
      for (const info of room.participants()) {
        const t = room.participant(info.identity).track(sid);
        if (t) return { identity: info.identity, kind: t.producer.kind, mimeType: t.producer.rtpParameters.codecs[0]?.mimeType ?? '' };
      }
      return undefined;
    },
  };
}
