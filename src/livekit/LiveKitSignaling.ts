// Stock LiveKit clients at /rtc (v0: two PeerConnections, binary protobuf frames), beside roomgate's
// own JSON protocol on the same path. The room work goes through the same Participant/Room code
// (grants, limits, webhooks, subscriptions); this module only keeps each client's two
// PeerConnections in step: it answers the publisher's offers, writes the subscriber's offers from
// mediasoup's consumers, and frames data as LiveKit DataPackets. Pure translation lives in
// signal.ts (protobuf), data.ts (DataPacket, DCEP) and media/sdp.ts (SDP).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  ConnectionQualityUpdate,
  ParticipantInfo,
  ReconnectResponse,
  RoomUpdate,
  SessionDescription,
  SpeakersChanged,
  StreamState,
  StreamStateInfo,
  StreamStateUpdate,
  TrackInfo,
  TrackPublishedResponse,
  TrackSource,
  TrackType,
  TrackUnpublishedResponse,
  MuteTrackRequest,
  ParticipantUpdate,
  Pong,
  type AddTrackRequest,
  type UpdateTrackSettings,
} from '@livekit/protocol';
import type { types } from 'mediasoup';
import type { WebSocket } from 'ws';
import { AuthenticatedSocket, type Refusal } from '../api/authenticatedSocket.ts';
import { WsEndpoint } from '../api/wsServer.ts';
import { authorize } from '../auth/authorize.ts';
import type { Claims } from '../auth/grants.ts';
import { grantFromPermission } from '../auth/join.ts';
import type { MintOptions, TokenVerifier } from '../auth/tokens.ts';
import { ApiError, permissionDenied } from '../errors.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import { ROUTER_MEDIA_CODECS } from '../media/codecs.ts';
import { localParameters } from '../media/webrtcTransport.ts';
import {
  consumerAnswerMedia,
  negotiateSendMedia,
  parseAnswer,
  parseOffer,
  SdpError,
  URI,
  writeDescription,
  type AnswerMedia,
  type AnswerTransport,
  type DescriptionSection,
  type MediaKind,
} from '../media/sdp.ts';
import type { Participant } from '../sfu/Participant.ts';
import type { RoomImpl } from '../sfu/Room.ts';
import type {
  ActiveSpeaker,
  DataPath,
  IceServer,
  LeaveReason,
  MidReuse,
  ParticipantSignalName,
  ParticipantSignals,
  RoomData,
  SignalSink,
} from '../sfu/ParticipantTypes.ts';
import type { RoomJoiner } from '../signaling/server.ts';
import { dcepOpen, kindFromSequence, PPID_BINARY, PPID_DCEP, readDataPacket, writeDataPacket } from './data.ts';
import {
  connectionQuality,
  decodeRequest,
  departedInfo,
  encodeResponse,
  joinResponse,
  leaveRequest,
  pendingTrack,
  preferredLayer,
  requestError,
  serverInfo,
  iceServers,
  speakers,
  tokenFrom,
  type PendingTrack,
  type SignalRequestMessage,
  type SignalResponseMessage,
} from './signal.ts';

export const LIVEKIT_RTC_PATH = '/rtc';

export interface LiveKitSignalingOptions {
  verifier: TokenVerifier;
  rooms: RoomJoiner;
  iceServers: (identity: string) => IceServer[];
  nodeId: string;
  log: Logger;
  /** Signs the refreshed tokens sent to clients (`refresh_token`). */
  mint: (opts: MintOptions) => Promise<string>;
  /** How long a participant whose socket dropped is kept for a resume (`reconnect=1`). */
  reconnectGraceMs?: number;
  pingIntervalMs?: number;
  /** How often a client gets a fresh token, besides after each change of its grants or details. */
  tokenRefreshMs?: number;
  /** How often a client gets the room's connection qualities. */
  qualityIntervalMs?: number;
}

/**
 * LiveKit's figures: a refreshed token lives 10 minutes and a new one comes every 5, so a client
 * that reconnects always holds a valid one, with its current grants and details.
 */
const REFRESHED_TOKEN_TTL_S = 600;

/** How long an add_track waits for the offer that carries its track. */
const PENDING_TRACK_MS = 30_000;
/** Header extensions the subscriber offer carries: what mediasoup writes on forwarded RTP. */
const SUBSCRIBER_EXTENSIONS = new Set<string>([URI.mid, URI.absSendTime, URI.transportCc, URI.audioLevel, URI.videoOrientation, URI.toffset]);
/**
 * SCTP stream ids the client's own channels may take: livekit-client opens `_lossy`, `_reliable`,
 * `_data_track` in that order, on even ids as the DTLS client or odd ones as the server.
 */
const UPSTREAM_STREAM_IDS = [0, 1, 2, 3, 4, 5];

export class LiveKitSignaling extends WsEndpoint<LiveKitConnection> {
  readonly #opts: Required<LiveKitSignalingOptions>;
  /** Sessions by room and identity, for resumes. */
  readonly #sessions = new Map<string, LiveKitSession>();

  constructor(opts: LiveKitSignalingOptions) {
    const full: Required<LiveKitSignalingOptions> = { reconnectGraceMs: 15_000, pingIntervalMs: 10_000, tokenRefreshMs: 5 * 60_000, qualityIntervalMs: 5_000, ...opts };
    super('livekit signaling', (ws, onClose) => new LiveKitConnection(ws, full, this.#sessions, onClose), opts.log);
    this.#opts = full;
  }

  /**
   * Refuses a bad token at the upgrade with 401, as LiveKit does: clients then ask /rtc/validate
   * for the reason. The token may come as `Authorization: Bearer` (Rust SDKs).
   */
  override handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void {
    const token = tokenFrom(url, req.headers.authorization);
    const refuse = (status: string) => socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    if (!token) return void refuse('401 Unauthorized');
    authorize(this.#opts.verifier, token, { missing: 'missing access_token' }).then(
      () => {
        url.searchParams.set('access_token', token);
        super.handleUpgrade(req, socket, head, url);
      },
      () => refuse('401 Unauthorized'),
    );
  }

  /**
   * GET /rtc/validate: what a client asks after its WebSocket failed. /rtc/v1 and /rtc/v1/validate
   * answer 404 so clients fall back from single-PeerConnection v1 to v0 by themselves.
   */
  async handleHttp(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const text = (status: number, body: string) => {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (url.pathname !== '/rtc/validate' || req.method !== 'GET') {
      return text(404, `no route for ${req.method} ${url.pathname} (LiveKit clients: roomgate speaks signaling v0 at /rtc)`);
    }
    try {
      await authorize(this.#opts.verifier, tokenFrom(url, req.headers.authorization), {
        missing: 'missing access_token',
        grant: (claims) => {
          if (!claims.video?.roomJoin || !claims.video.room) throw permissionDenied('the token has no roomJoin grant for a room');
        },
      });
    } catch (err) {
      // 401 for a missing or bad token, 403 for a token without the grant: what the client shows.
      return text(err instanceof ApiError ? err.status : 401, err instanceof ApiError ? err.message : 'invalid token');
    }
    text(200, 'success');
  }
}

function sessionKey(room: string, identity: string): string {
  return `${room}\u0000${identity}`;
}

/** One WebSocket. The session it serves outlives it while a resume is possible. */
class LiveKitConnection extends AuthenticatedSocket {
  readonly #opts: Required<LiveKitSignalingOptions>;
  readonly #sessions: Map<string, LiveKitSession>;
  #session: LiveKitSession | undefined;
  #queue: Promise<void> = Promise.resolve();
  // handleUpgrade put the token in the query, whichever way the client sent it.
  protected readonly missingToken = 'missing access_token';

  constructor(ws: WebSocket, opts: Required<LiveKitSignalingOptions>, sessions: Map<string, LiveKitSession>, onGone: () => void) {
    super(ws, opts, onGone);
    this.#opts = opts;
    this.#sessions = sessions;
  }

  /** Resumes the held session (`reconnect=1`) or joins with a new one. */
  protected async open(claims: Claims, url: URL): Promise<boolean> {
    const key = sessionKey(claims.video?.room ?? '', claims.sub ?? '');
    if (url.searchParams.get('reconnect') === '1') {
      const held = this.#sessions.get(key);
      if (held && this.#opts.rooms.resume(claims, held)) {
        this.#session = held;
        await held.resumeOn(this);
      }
    }
    if (!this.#session) {
      const session = new LiveKitSession(this.#opts, claims, kindFromSequence(url.searchParams.get('sdk')), () => {
        if (this.#sessions.get(key) === session) this.#sessions.delete(key);
      });
      const { room, participant } = await this.#opts.rooms.join(claims, session);
      this.#sessions.get(key)?.replaced();
      this.#sessions.set(key, session);
      this.#session = session;
      if (this.ws.readyState !== this.ws.OPEN) {
        participant.detach(session, this.#opts.reconnectGraceMs);
        return false;
      }
      await session.start(room, participant, this);
    }
    return true;
  }

  /** The first frame a client reads: a leave with the reason, which it reports as a join error. */
  protected refused(err: unknown): Refusal {
    const apiErr = err instanceof ApiError ? err : new ApiError('internal', 'join failed');
    if (!(err instanceof ApiError)) this.log.error({ err }, 'livekit join failed');
    this.send({ case: 'leave', value: leaveRequest('JOIN_FAILURE') });
    return { code: 1008, reason: apiErr.message };
  }

  /** Ends this socket for its session (a leave, a resume elsewhere). */
  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  send(message: SignalResponseMessage): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeResponse(message));
  }

  protected receive(data: Buffer, isBinary: boolean): void {
    this.#queue = this.#queue
      .then(async () => {
        const session = this.#session;
        if (!session || !session.owns(this)) return;
        let message: SignalRequestMessage;
        try {
          message = decodeRequest(data, isBinary);
        } catch (err) {
          this.send({ case: 'requestResponse', value: requestError(err as ApiError) });
          return;
        }
        await session.handle(message);
      })
      .catch((err: unknown) => this.log.error({ err }, 'livekit signal handling failed'));
  }

  protected closed(): void {
    this.#session?.socketClosed(this);
  }
}

interface PublisherSection {
  section: DescriptionSection;
  trackSid?: string;
}

interface SubscriberSection {
  mid: string;
  kind: MediaKind;
  consumerId?: string;
  trackSid?: string;
  media: AnswerMedia;
  /**
   * Free for a new consumer: its consumer is gone and an offer showing it inactive went out (the
   * client applies offers in order, so it sees the section end before it sees it reused).
   */
  reusable?: boolean;
  /** Promised to a consumer being created (MidReuse.takeMid). */
  taken?: boolean;
}

/** One LiveKit participant's session: its two PeerConnections' state, across WebSocket resumes. */
class LiveKitSession implements SignalSink, DataPath, MidReuse {
  readonly #opts: Required<LiveKitSignalingOptions>;
  readonly #onEnd: () => void;
  /** The join token's claims: the grants a refreshed token keeps besides the participant's current ones. */
  readonly #claims: Claims;
  /** The refresh_token and connection-quality timers, while the session lasts. */
  readonly #timers: NodeJS.Timeout[] = [];
  /** Whether this client's SDK marks reliable packets by `sequence` rather than `kind` (data.ts). */
  readonly #kindFromSequence: boolean;
  #conn: LiveKitConnection | undefined;
  #room!: RoomImpl;
  #p!: Participant;
  #log: Logger;
  #started = false;
  readonly #sessionId = String(Date.now());
  #speakers: ActiveSpeaker[] = [];
  /** add_track requests waiting for the offer that carries them, by cid. */
  readonly #pending = new Map<string, PendingTrack & { sid: string; timer: NodeJS.Timeout }>();
  /** Tracks this client unpublished itself (no track_unpublished echo for those). */
  readonly #selfUnpublished = new Set<string>();
  readonly #pub = {
    transportId: undefined as string | undefined,
    local: undefined as AnswerTransport | undefined,
    sctp: { port: 5000, maxMessageSize: 262144 },
    connected: false,
    version: 0,
    sections: new Map<string, PublisherSection>(),
    /** The client's ICE username fragment; a new one in an offer is an ICE restart. */
    remoteUfrag: '',
  };
  readonly #sub = {
    transportId: '',
    local: undefined as unknown as AnswerTransport,
    sctp: { port: 5000, maxMessageSize: 262144 },
    connected: false,
    version: 0,
    offerId: 0,
    inFlight: undefined as { id: number; resume: string[] } | undefined,
    again: false,
    sections: [] as SubscriberSection[],
    resumed: new Set<string>(),
  };
  /** The server's data channels on the subscriber PeerConnection, open once SCTP is up. */
  #down: { direct: types.DirectTransport; reliable: types.DataProducer; lossy: types.DataProducer; open: boolean } | undefined;

  constructor(opts: Required<LiveKitSignalingOptions>, claims: Claims, kindFromSequence: boolean, onEnd: () => void) {
    this.#opts = opts;
    this.#claims = claims;
    this.#kindFromSequence = kindFromSequence;
    this.#onEnd = onEnd;
    this.#log = opts.log;
  }

  owns(conn: LiveKitConnection): boolean {
    return this.#conn === conn;
  }

  async start(room: RoomImpl, participant: Participant, conn: LiveKitConnection): Promise<void> {
    this.#room = room;
    this.#p = participant;
    this.#conn = conn;
    this.#log = this.#opts.log.child({ room: room.name, participant: participant.identity });
    participant.dataPath = this;
    participant.midReuse = this;
    participant.on('@updated', () => {
      this.#send({ case: 'update', value: new ParticipantUpdate({ participants: [participant.info()] }) });
      // As LiveKit: new grants or details come with a token that carries them, for the next reconnect.
      this.#refreshToken();
    });
    participant.on('@trackmuted', (t) => this.#send({ case: 'mute', value: new MuteTrackRequest({ sid: t.info.sid, muted: t.info.muted }) }));
    participant.on('@trackunpublished', (t) => {
      if (this.#selfUnpublished.delete(t.info.sid)) return;
      this.#send({ case: 'trackUnpublished', value: new TrackUnpublishedResponse({ trackSid: t.info.sid }) });
    });

    // The receiving side first, so the initial subscriber offer can go out with the join.
    const recv = await participant.createTransport({ direction: 'recv' });
    this.#sub.transportId = recv.id;
    this.#sub.local = localParameters(recv);
    if (recv.sctpParameters) this.#sub.sctp = { port: recv.sctpParameters.port, maxMessageSize: recv.sctpParameters.maxMessageSize };
    await this.#openDownstreamData();

    const snapshot = room.snapshotFor(participant);
    this.#speakers = snapshot.activeSpeakers;
    this.#send({
      case: 'join',
      value: joinResponse({
        room: snapshot.room,
        participant: participant.info(),
        others: snapshot.participants,
        iceServers: this.#opts.iceServers(participant.identity),
        nodeId: this.#opts.nodeId,
      }),
    });
    this.#started = true;
    this.#timers.push(
      setInterval(() => this.#refreshToken(), this.#opts.tokenRefreshMs),
      setInterval(() => this.#sendQuality(), this.#opts.qualityIntervalMs),
    );
    // subscriber_primary: the client waits for this offer to connect at all.
    this.#negotiate();
    // Receive capabilities: the router's own, so consumers use the payload types and header
    // extension ids the subscriber offer declares.
    const caps = room.rtpCapabilities;
    participant.ready({
      rtpCapabilities: {
        codecs: caps.codecs ?? [],
        headerExtensions: (caps.headerExtensions ?? []).filter((h) => SUBSCRIBER_EXTENSIONS.has(h.uri) && h.direction !== 'recvonly'),
      },
    });
  }

  /**
   * A new socket took this session over (`reconnect=1`). The client restarts ICE on its publisher
   * with its next offer and waits for a subscriber offer with new ICE credentials: restart ours and
   * offer again what it may have missed while away.
   */
  async resumeOn(conn: LiveKitConnection): Promise<void> {
    const old = this.#conn;
    this.#conn = conn;
    if (old && old !== conn) old.close(4409, 'session resumed on another connection');
    this.#send({
      case: 'reconnect',
      value: new ReconnectResponse({ iceServers: iceServers(this.#opts.iceServers(this.#p.identity)), serverInfo: serverInfo(this.#opts.nodeId) }),
    });
    const { iceParameters } = await this.#p.restartIce({ transportId: this.#sub.transportId });
    this.#sub.local = { ...this.#sub.local, iceUfrag: iceParameters.usernameFragment, icePwd: iceParameters.password };
    this.#sub.inFlight = undefined;
    this.#negotiate();
  }

  /** Another join took this identity (DUPLICATE_IDENTITY closes the participant itself). */
  replaced(): void {
    this.#onEnd();
  }

  socketClosed(conn: LiveKitConnection): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    if (this.#started && !this.#p.closed) this.#p.detach(this, this.#opts.reconnectGraceMs);
  }

  #send(message: SignalResponseMessage): void {
    this.#conn?.send(message);
  }

  /** A token with the participant's current grants, name, metadata and attributes (`refresh_token`). */
  #refreshToken(): void {
    if (!this.#started || this.#p.closed) return;
    const info = this.#p.info();
    const { sub: _sub, exp: _exp, nbf: _nbf, iss: _iss, jti: _jti, iat: _iat, ...kept } = this.#claims;
    this.#opts
      .mint({
        ...kept,
        identity: info.identity,
        name: info.name,
        metadata: info.metadata,
        attributes: info.attributes,
        video: { ...this.#claims.video, ...(info.permission ? grantFromPermission(info.permission) : {}) },
        ttl: REFRESHED_TOKEN_TTL_S,
      })
      .then((token) => this.#send({ case: 'refreshToken', value: token }))
      .catch((err: unknown) => this.#log.warn({ err }, 'could not mint a refreshed token'));
  }

  /** Everyone's connection quality as this participant may see them (`connection_quality`). */
  #sendQuality(): void {
    if (!this.#started || !this.#conn) return;
    const updates = [this.#p, ...this.#room.visibleOthersOf(this.#p)].map((p) =>
      connectionQuality(
        p.sid,
        p.tracks.filter((t) => !t.producer.paused && !t.info.muted).map((t) => t.producer.score.map((s) => s.score)),
      ),
    );
    this.#send({ case: 'connectionQuality', value: new ConnectionQualityUpdate({ updates }) });
  }

  // ---- SignalSink: room events, as LiveKit responses ------------------------------------------

  send<K extends ParticipantSignalName>(event: K, data: ParticipantSignals[K]): void {
    if (!this.#started) return; // the join response carries the state as of joining
    switch (event) {
      case 'participantJoined':
      case 'participantUpdated': {
        const info = ParticipantInfo.fromJson((data as ParticipantSignals['participantJoined']).participant as never);
        this.#send({ case: 'update', value: new ParticipantUpdate({ participants: [info] }) });
        return;
      }
      case 'participantLeft': {
        const d = data as ParticipantSignals['participantLeft'];
        this.#send({ case: 'update', value: new ParticipantUpdate({ participants: [departedInfo(d.identity, d.sid)] }) });
        return;
      }
      case 'trackPublished':
      case 'trackUnpublished':
      case 'trackMuted': {
        const owner = this.#other((data as { participantIdentity: string }).participantIdentity);
        if (owner) this.#send({ case: 'update', value: new ParticipantUpdate({ participants: [owner.info()] }) });
        return;
      }
      case 'newConsumer':
        return this.#addConsumer(data as ParticipantSignals['newConsumer']);
      case 'consumerClosed':
        return this.#removeConsumer((data as ParticipantSignals['consumerClosed']).consumerId);
      case 'streamState':
        return this.#streamState(data as ParticipantSignals['streamState']);
      case 'activeSpeakers': {
        const list = (data as ParticipantSignals['activeSpeakers']).speakers;
        this.#send({ case: 'speakersChanged', value: new SpeakersChanged({ speakers: speakers(list, this.#speakers) }) });
        this.#speakers = list;
        return;
      }
      case 'roomMetadata':
        this.#send({ case: 'roomUpdate', value: new RoomUpdate({ room: this.#room.info() }) });
        return;
      default:
        // permissionsChanged: the participant's own update carries the new permission.
        // newDataConsumer: LiveKit sessions have their own data channels. left: see close().
        return;
    }
  }

  close(reason: LeaveReason): void {
    this.#started = false;
    this.#end();
    const conn = this.#conn;
    this.#conn = undefined;
    if (!conn) return;
    // A client that asked to leave needs no reason back.
    if (reason !== 'CLIENT_INITIATED') conn.send({ case: 'leave', value: leaveRequest(reason) });
    conn.close(1000, reason);
  }

  superseded(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    conn?.close(4409, 'session resumed on another connection');
  }

  #end(): void {
    for (const t of this.#timers.splice(0)) clearInterval(t);
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    this.#down?.direct.close();
    this.#down = undefined;
    this.#onEnd();
  }

  #other(identity: string): Participant | undefined {
    try {
      return this.#room.participant(identity);
    } catch {
      return undefined;
    }
  }

  // ---- requests ---------------------------------------------------------------------------------

  async handle(message: SignalRequestMessage): Promise<void> {
    if (this.#p.closed) return;
    try {
      await this.#dispatch(message);
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : err instanceof SdpError ? new ApiError('invalid_argument', err.message) : undefined;
      if (!apiErr) {
        this.#log.error({ err, request: message.case }, 'livekit request failed');
        this.#send({ case: 'requestResponse', value: requestError(new ApiError('internal', `${message.case} failed`)) });
        return;
      }
      this.#log.debug({ request: message.case, err: apiErr.message }, 'livekit request refused');
      const request = message.case === 'addTrack' || message.case === 'mute' || message.case === 'updateMetadata' || message.case === 'trickle'
        ? ({ case: message.case, value: message.value } as never)
        : undefined;
      const requestId = message.case === 'updateMetadata' ? message.value.requestId : 0;
      this.#send({ case: 'requestResponse', value: requestError(apiErr, requestId, request) });
    }
  }

  async #dispatch(message: SignalRequestMessage): Promise<void> {
    const p = this.#p;
    switch (message.case) {
      case 'offer':
        return this.#onPublisherOffer(message.value);
      case 'answer':
        return this.#onSubscriberAnswer(message.value);
      case 'addTrack':
        return this.#addTrack(message.value);
      case 'mute':
        await p.setTrackMuted(message.value.sid, message.value.muted);
        return;
      case 'trackSetting':
        return this.#trackSettings(message.value);
      case 'subscription': {
        const sids = [...message.value.trackSids, ...message.value.participantTracks.flatMap((t) => t.trackSids)];
        for (const sid of sids) {
          if (!this.#room.visibleTrack(p, sid)) throw new ApiError('not_found', `track '${sid}' is not published in this room`);
          p.setSubscription(sid, message.value.subscribe);
        }
        if (message.value.subscribe) this.#room.resubscribe(p);
        return;
      }
      case 'leave':
        // After this returns: close() ends the socket the request came on.
        setImmediate(() => p.close('CLIENT_INITIATED'));
        return;
      case 'ping':
        this.#send({ case: 'pong', value: BigInt(Date.now()) });
        return;
      case 'pingReq':
        this.#send({ case: 'pongResp', value: new Pong({ lastPingTimestamp: message.value.timestamp, timestamp: BigInt(Date.now()) }) });
        return;
      case 'updateMetadata': {
        const v = message.value;
        // LiveKit applies only what the request sets: an empty name or metadata means unchanged.
        p.updateMetadata({
          ...(v.metadata ? { metadata: v.metadata } : {}),
          ...(v.name ? { name: v.name } : {}),
          ...(Object.keys(v.attributes).length > 0 ? { attributes: v.attributes } : {}),
        });
        return;
      }
      case 'trickle':
      case 'subscriptionPermission':
      case 'syncState':
      case 'updateLayers':
      case 'updateAudioTrack':
      case 'updateVideoTrack':
        // mediasoup is ICE-lite and learns the client's address from its checks; everyone may
        // subscribe to everything; the rest is advisory for a server that forwards as it gets.
        return;
      default:
        throw new ApiError('unimplemented', `request '${message.case}' is not supported by this server`);
    }
  }

  #addTrack(req: AddTrackRequest): void {
    const pending = pendingTrack(req);
    this.#p.checkPublish(pending.source, pending.kind);
    if (this.#pending.has(pending.cid)) throw new ApiError('failed_precondition', `add_track: cid '${pending.cid}' is already pending`);
    const sid = newId('TR_');
    const timer = setTimeout(() => this.#pending.delete(pending.cid), PENDING_TRACK_MS);
    this.#pending.set(pending.cid, { ...pending, sid, timer });
    const track = new TrackInfo({
      sid,
      type: pending.kind === 'audio' ? TrackType.AUDIO : TrackType.VIDEO,
      name: pending.name,
      source: sourceOf(pending.source),
      muted: pending.muted,
      width: pending.width,
      height: pending.height,
      simulcast: pending.layers.length > 1,
      layers: pending.layers,
    });
    this.#send({ case: 'trackPublished', value: new TrackPublishedResponse({ cid: pending.cid, track }) });
  }

  async #onPublisherOffer(sd: SessionDescription): Promise<void> {
    const offer = parseOffer(sd.sdp, { allowData: true, maxMedia: 32 });
    const p = this.#p;
    if (!this.#pub.transportId) {
      const t = await p.createTransport({ direction: 'send' });
      this.#pub.transportId = t.id;
      this.#pub.local = localParameters(t);
      if (t.sctpParameters) this.#pub.sctp = { port: t.sctpParameters.port, maxMessageSize: t.sctpParameters.maxMessageSize };
    }
    const transportId = this.#pub.transportId;
    if (this.#pub.remoteUfrag && this.#pub.remoteUfrag !== offer.iceUfrag) {
      // An ICE restart (the client resuming): answer with fresh credentials too.
      const { iceParameters } = await p.restartIce({ transportId });
      this.#pub.local = { ...this.#pub.local!, iceUfrag: iceParameters.usernameFragment, icePwd: iceParameters.password };
    }
    this.#pub.remoteUfrag = offer.iceUfrag;
    if (!this.#pub.connected) {
      // We answer setup:passive, so the client is the DTLS client whatever it offered.
      await p.connectTransport({ transportId, dtlsParameters: { role: 'client', fingerprints: offer.fingerprints } });
      this.#pub.connected = true;
    }
    const lines: ({ index: number; data: true; mid: string } | { index: number; data: false; media: (typeof offer.media)[number] })[] = [
      ...offer.media.map((m) => ({ index: m.index, data: false as const, media: m })),
      ...(offer.data ? [{ index: offer.data.index, data: true as const, mid: offer.data.mid }] : []),
    ].sort((a, b) => a.index - b.index);
    const sections: DescriptionSection[] = [];
    for (const line of lines) {
      if (line.data) {
        if (!this.#pub.sections.has(line.mid)) {
          await this.#openUpstreamData(transportId);
          this.#pub.sections.set(line.mid, { section: { type: 'data', mid: line.mid, sctp: this.#pub.sctp } });
        }
        sections.push(this.#pub.sections.get(line.mid)!.section);
        continue;
      }
      sections.push(await this.#publisherSection(line.media, transportId));
    }
    const sdp = writeDescription('answer', sections, this.#pub.local!, this.#sessionId, ++this.#pub.version);
    this.#send({ case: 'answer', value: new SessionDescription({ type: 'answer', sdp, id: sd.id }) });
  }

  async #publisherSection(m: ReturnType<typeof parseOffer>['media'][number], transportId: string): Promise<DescriptionSection> {
    const known = this.#pub.sections.get(m.mid);
    if (known) {
      // The client removed the track: its m-line goes inactive (livekit-client sends no unpublish request).
      if (known.trackSid && (m.direction === 'inactive' || m.direction === 'recvonly') && known.section.type === 'rtp') {
        const sid = known.trackSid;
        known.trackSid = undefined;
        known.section = { type: 'rtp', media: { ...known.section.media, direction: 'inactive', recvRids: [] } };
        if (this.#p.track(sid)) {
          this.#selfUnpublished.add(sid);
          this.#p.unpublishTrack({ trackSid: sid });
        }
      }
      return known.section;
    }
    const reject = (why: string): DescriptionSection => {
      this.#log.info({ mid: m.mid, kind: m.kind, why }, 'publisher m-line rejected');
      const section: DescriptionSection = { type: 'rejected', mid: m.mid, kind: m.kind, payload: String(m.codecs[0]?.payloadType ?? 0) };
      this.#pub.sections.set(m.mid, { section });
      return section;
    };
    if (m.direction !== 'sendonly' && m.direction !== 'sendrecv') return reject(`direction ${m.direction}`);
    const pending = m.trackId ? this.#pending.get(m.trackId) : undefined;
    if (!pending) {
      this.#send({ case: 'requestResponse', value: requestError(new ApiError('failed_precondition', `offer m-line ${m.mid}: no add_track for track '${m.trackId ?? '?'}'`)) });
      return reject('no add_track for its track id');
    }
    this.#pending.delete(pending.cid);
    clearTimeout(pending.timer);
    try {
      if (pending.kind !== m.kind) throw new ApiError('invalid_argument', `offer m-line ${m.mid} is ${m.kind}, add_track said ${pending.kind}`);
      const plan = negotiateSendMedia(m, ROUTER_MEDIA_CODECS);
      await this.#p.publishTrack(
        {
          transportId,
          kind: m.kind,
          rtpParameters: plan.rtpParameters as unknown as Record<string, unknown>,
          source: pending.source,
          name: pending.name || pending.source,
          muted: pending.muted,
          width: pending.width,
          height: pending.height,
        },
        { sid: pending.sid, layers: pending.layers },
      );
      const section: DescriptionSection = { type: 'rtp', media: plan.answer };
      this.#pub.sections.set(m.mid, { section, trackSid: pending.sid });
      return section;
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : err instanceof SdpError ? new ApiError('invalid_argument', err.message) : undefined;
      if (!apiErr) throw err;
      this.#send({ case: 'requestResponse', value: requestError(apiErr) });
      return reject(apiErr.message);
    }
  }

  // ---- subscriber PeerConnection ------------------------------------------------------------

  #addConsumer(c: ParticipantSignals['newConsumer']): void {
    const owner = this.#other(c.participantIdentity);
    if (!owner) return;
    const rtp = c.rtpParameters as unknown as types.RtpParameters;
    // mediasoup writes the consumer's mid into forwarded RTP, so the m-line must carry that mid:
    // a freed section's when takeMid gave it one (the section is reused in place), else a new one.
    const mid = rtp.mid ?? `c${this.#sub.sections.length}`;
    const media = consumerAnswerMedia(mid, c.kind, rtp, `${owner.sid}|${c.trackSid}`, c.trackSid);
    const section: SubscriberSection = { mid, kind: c.kind, consumerId: c.consumerId, trackSid: c.trackSid, media };
    const at = this.#sub.sections.findIndex((x) => x.mid === mid);
    if (at === -1) this.#sub.sections.push(section);
    else this.#sub.sections[at] = section;
    this.#negotiate();
  }

  /** A subscribed track's media stopped or resumed (the sfu reports changes only): `stream_state_update`. */
  #streamState(d: ParticipantSignals['streamState']): void {
    const owner = this.#other(d.participantIdentity);
    if (!owner) return;
    const state = d.state === 'paused' ? StreamState.PAUSED : StreamState.ACTIVE;
    this.#send({ case: 'streamStateUpdate', value: new StreamStateUpdate({ streamStates: [new StreamStateInfo({ participantSid: owner.sid, trackSid: d.trackSid, state })] }) });
  }

  takeMid(kind: 'audio' | 'video'): string | undefined {
    const free = this.#sub.sections.find((s) => s.reusable && !s.taken && !s.consumerId && s.kind === kind);
    if (!free) return undefined;
    // Taken for good: a consume that then fails leaves it unused, never doubly used.
    free.taken = true;
    return free.mid;
  }

  #removeConsumer(consumerId: string): void {
    const s = this.#sub.sections.find((x) => x.consumerId === consumerId);
    if (!s) return;
    s.consumerId = undefined;
    s.trackSid = undefined;
    const { send: _gone, ...rest } = s.media;
    s.media = { ...rest, direction: 'inactive' };
    this.#sub.resumed.delete(consumerId);
    this.#negotiate();
  }

  /** Sends the subscriber offer, one at a time: changes during a negotiation make another after it. */
  #negotiate(): void {
    const sub = this.#sub;
    if (!this.#started || !this.#conn) return;
    if (sub.inFlight) {
      sub.again = true;
      return;
    }
    sub.again = false;
    const sections: DescriptionSection[] = [
      { type: 'data', mid: 'dc', sctp: sub.sctp },
      ...sub.sections.map((s): DescriptionSection => ({ type: 'rtp', media: s.media })),
    ];
    const sdp = writeDescription('offer', sections, sub.local, this.#sessionId, ++sub.version);
    for (const s of sub.sections) if (!s.consumerId) s.reusable = true;
    const id = ++sub.offerId;
    sub.inFlight = { id, resume: sub.sections.flatMap((s) => (s.consumerId && !sub.resumed.has(s.consumerId) ? [s.consumerId] : [])) };
    this.#send({ case: 'offer', value: new SessionDescription({ type: 'offer', sdp, id }) });
  }

  async #onSubscriberAnswer(sd: SessionDescription): Promise<void> {
    const sub = this.#sub;
    const inFlight = sub.inFlight;
    if (!inFlight || (sd.id !== 0 && sd.id !== inFlight.id)) return; // an answer to an offer we replaced
    sub.inFlight = undefined;
    try {
      const answer = parseAnswer(sd.sdp);
      if (!sub.connected) {
        await this.#p.connectTransport({
          transportId: sub.transportId,
          dtlsParameters: { role: answer.setup === 'active' ? 'client' : 'server', fingerprints: answer.fingerprints },
        });
        sub.connected = true;
      }
      for (const consumerId of inFlight.resume) {
        if (!sub.sections.some((s) => s.consumerId === consumerId)) continue;
        sub.resumed.add(consumerId);
        await this.#p.resumeConsumer({ consumerId }).catch((err: unknown) => this.#log.debug({ consumerId, err: (err as Error).message }, 'consumer resume failed'));
      }
    } finally {
      if (sub.again) this.#negotiate();
    }
  }

  async #trackSettings(s: UpdateTrackSettings): Promise<void> {
    for (const sid of s.trackSids) {
      const section = this.#sub.sections.find((x) => x.trackSid === sid);
      const track = this.#room.visibleTrack(this.#p, sid);
      if (!section?.consumerId || !track) continue;
      const consumerId = section.consumerId;
      if (s.disabled) {
        await this.#p.pauseConsumer({ consumerId });
        continue;
      }
      if (this.#sub.resumed.has(consumerId)) await this.#p.resumeConsumer({ consumerId });
      const layers = track.producer.rtpParameters.encodings?.length ?? 1;
      if (track.producer.kind === 'video' && layers > 1) {
        await this.#p.setPreferredLayers({ consumerId, spatialLayer: preferredLayer(s, track.info, layers) });
      }
    }
  }

  // ---- data ---------------------------------------------------------------------------------

  /** DataProducers on every stream id the client's own channels may take (their DCEP never reaches us). */
  async #openUpstreamData(transportId: string): Promise<void> {
    if (!this.#p.permission.canPublishData) return;
    for (const streamId of UPSTREAM_STREAM_IDS) {
      await this.#p.publishData({ transportId, sctpStreamParameters: { streamId, ordered: true }, label: `lk-${streamId}` });
    }
  }

  /** `_reliable` and `_lossy` towards the client, opened with our own DCEP once SCTP is up. */
  async #openDownstreamData(): Promise<void> {
    const transport = this.#p.recvTransport;
    if (!transport) return;
    const direct = await this.#room.createDataSource(this.#p);
    const reliable = await direct.produceData({ label: '_reliable' });
    const lossy = await direct.produceData({ label: '_lossy' });
    await transport.consumeData({ dataProducerId: reliable.id, ordered: true });
    await transport.consumeData({ dataProducerId: lossy.id, ordered: false, maxRetransmits: 0 });
    const down = { direct, reliable, lossy, open: false };
    this.#down = down;
    transport.observer.once('close', () => direct.close());
    const open = () => {
      if (down.open || direct.closed) return;
      reliable.send(dcepOpen('_reliable', { ordered: true }), PPID_DCEP);
      lossy.send(dcepOpen('_lossy', { ordered: false, maxRetransmits: 0 }), PPID_DCEP);
      down.open = true;
    };
    if (transport.sctpState === 'connected') open();
    transport.on('sctpstatechange', (state) => {
      if (state === 'connected') open();
    });
  }

  read(message: Buffer): ReturnType<DataPath['read']> {
    return readDataPacket(message, this.#kindFromSequence);
  }

  deliver(message: RoomData): void {
    const down = this.#down;
    if (!down?.open || down.direct.closed) return;
    const producer = message.reliable ? down.reliable : down.lossy;
    producer.send(Buffer.from(writeDataPacket(message)), PPID_BINARY);
  }
}

function sourceOf(name: PendingTrack['source']): TrackSource {
  return { camera: TrackSource.CAMERA, microphone: TrackSource.MICROPHONE, screen_share: TrackSource.SCREEN_SHARE, screen_share_audio: TrackSource.SCREEN_SHARE_AUDIO }[name];
}
