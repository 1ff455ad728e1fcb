// One participant's media, as a facade over its parts: its transports (participant/
// ParticipantTransports.ts), what it publishes (ParticipantPublishing.ts), what it receives and its
// data channels (ParticipantSubscribing.ts) and its signaling connection with the resume window
// (ParticipantSession.ts). Its identity, metadata and grants live here; grants are checked on every
// request, so a grant changed live (RoomService UpdateParticipant) takes effect on the next one.
// Cross-participant work (who subscribes to what) is the Room's; the participant only acts on itself.
import {
  ParticipantInfo,
  ParticipantInfo_Kind,
  ParticipantInfo_State,
  ParticipantPermission,
  type TrackInfo,
  type VideoLayer,
} from '@livekit/protocol';
import type { types } from 'mediasoup';
import { TypedEmitter } from '../emitter.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import { permissionDenied } from './errors.ts';
import { ParticipantPublishing } from './participant/ParticipantPublishing.ts';
import { ParticipantSession } from './participant/ParticipantSession.ts';
import { ParticipantSubscribing, type HeldOffers } from './participant/ParticipantSubscribing.ts';
import { ParticipantTransports, type CreatedTransport } from './participant/ParticipantTransports.ts';
import type {
  ConnectTransportRequest,
  ConsumerRef,
  CreateTransportRequest,
  DataPath,
  MidReuse,
  LeaveReason,
  ParticipantEvents,
  ParticipantJoin,
  ParticipantSignalName,
  ParticipantSignals,
  PreferredLayersRequest,
  PublishDataRequest,
  PublishedTrack,
  PublishTrackRequest,
  ReadyRequest,
  SignalSink,
  TrackRef,
  TrackSourceName,
  TransportRef,
  TransportSettings,
  UpdateMetadataRequest,
} from './ParticipantTypes.ts';

export type { DataPath, InboundData, PublishedTrack, RoomData, SignalSink, TransportSettings } from './ParticipantTypes.ts';
export { SOURCE_BY_NAME, sourceNames } from './participant/trackSources.ts';

export interface ParticipantInit extends ParticipantJoin {
  /** The room's own Router: send transports and server transports, and where every producer lives. */
  router: types.Router;
  /** The Router a new receive transport goes on (the room's own, or an overflow router on another worker). */
  receiverRouter: () => Promise<types.Router>;
  /** Makes `producer` (on `router`, the room's) consumable on `target`; a no-op once done. */
  pipe: (producer: types.Producer, target: types.Router) => Promise<void>;
  transport: TransportSettings;
  log: Logger;
}

export class Participant extends TypedEmitter<ParticipantEvents> {
  readonly sid = newId('PA_');
  readonly identity: string;
  readonly kind: ParticipantInfo_Kind;
  readonly joinedAt = BigInt(Math.floor(Date.now() / 1000));
  #name: string;
  #metadata: string;
  #attributes: Record<string, string>;
  #permission: ParticipantPermission;
  readonly #log: Logger;
  readonly #transports: ParticipantTransports;
  readonly #publishing: ParticipantPublishing;
  readonly #subscribing: ParticipantSubscribing;
  readonly #session: ParticipantSession;
  #closed = false;
  /** Set by a signaling edge whose clients frame data themselves; see DataPath. */
  dataPath: DataPath | undefined;
  /** Set by a signaling edge whose client reuses receive m-sections (see MidReuse). */
  midReuse: MidReuse | undefined;

  constructor(init: ParticipantInit) {
    super();
    this.identity = init.identity;
    this.kind = init.kind ?? ParticipantInfo_Kind.STANDARD;
    this.#name = init.name;
    this.#metadata = init.metadata;
    this.#attributes = { ...init.attributes };
    this.#permission = init.permission.clone();
    this.#log = init.log.child({ participant: init.identity, sid: this.sid });
    this.onListenerError((event, err) => this.#log.error({ event, err }, 'participant listener threw'));
    const closed = () => this.#closed;
    const permission = () => this.#permission;
    this.#transports = new ParticipantTransports({
      identity: this.identity,
      router: init.router,
      receiverRouter: init.receiverRouter,
      settings: init.transport,
      log: this.#log,
      closed,
      // a recv transport lets queued subscriptions proceed
      recvReady: () => this.safeEmit('@ready'),
    });
    this.#publishing = new ParticipantPublishing({
      identity: this.identity,
      log: this.#log,
      permission,
      transport: (id) => this.#transports.publishing(id),
      emit: (event, ...args) => this.safeEmit(event, ...args),
    });
    this.#subscribing = new ParticipantSubscribing({
      router: init.router,
      pipe: init.pipe,
      recvTransport: () => this.#transports.recv,
      recvRouter: () => this.#transports.recvRouter,
      closed,
      permission,
      send: (event, data) => this.send(event, data),
      takeMid: (kind) => this.midReuse?.takeMid(kind),
    });
    this.#session = new ParticipantSession(closed, () => this.close('CONNECTION_LOST'));
  }

  get closed(): boolean {
    return this.#closed;
  }

  get hidden(): boolean {
    return this.#permission.hidden;
  }

  get recorder(): boolean {
    return this.#permission.recorder;
  }

  get permission(): ParticipantPermission {
    return this.#permission.clone();
  }

  get tracks(): PublishedTrack[] {
    return this.#publishing.tracks;
  }

  track(trackSid: string): PublishedTrack | undefined {
    return this.#publishing.track(trackSid);
  }

  info(): ParticipantInfo {
    return new ParticipantInfo({
      sid: this.sid,
      identity: this.identity,
      name: this.#name,
      metadata: this.#metadata,
      attributes: this.#attributes,
      state: ParticipantInfo_State.ACTIVE,
      joinedAt: this.joinedAt,
      tracks: this.tracks.map((t) => t.info.clone()),
      permission: this.#permission.clone(),
      isPublisher: this.#publishing.size > 0,
      kind: this.kind,
    });
  }

  attach(sink: SignalSink): void {
    this.#session.attach(sink);
  }

  /**
   * The signaling connection went away. The session (transports, tracks) is held for `graceMs` so
   * the client can resume it; after that the participant leaves with CONNECTION_LOST.
   */
  detach(sink: SignalSink, graceMs: number): void {
    this.#session.detach(sink, graceMs);
  }

  /** For a resumed session's `joined`: the consumers and data channels held for this participant. */
  offers(): HeldOffers {
    return this.#subscribing.offers();
  }

  send<K extends ParticipantSignalName>(event: K, data: ParticipantSignals[K]): void {
    this.#session.send(event, data);
  }

  // ---- requests from the participant's own connection ---------------------------------------

  ready(data: ReadyRequest): void {
    this.#subscribing.rtpCapabilities = data.rtpCapabilities as types.RtpCapabilities;
    this.safeEmit('@ready');
  }

  async createTransport({ direction }: CreateTransportRequest): Promise<CreatedTransport> {
    if (direction === 'send' && !this.#permission.canPublish && !this.#permission.canPublishData) {
      throw permissionDenied('this participant may not publish (canPublish and canPublishData are false)');
    }
    return this.#transports.create(direction);
  }

  /**
   * A send transport the server opens for this participant (an ingress PlainTransport fed by the
   * local FFmpeg, which sends RTP and RTCP on their own ports): publishTrack accepts its id, and it
   * closes with the participant.
   */
  openPlainSend(listenIp: string): Promise<types.PlainTransport> {
    return this.#transports.openPlainSend(listenIp);
  }

  /** The same for a WHIP publisher: a WebRtcTransport whose DTLS and ICE the WHIP edge completes. */
  openWebRtcSend(appData: Record<string, unknown>): Promise<types.WebRtcTransport> {
    return this.#transports.openWebRtcSend(appData);
  }

  get recvTransport(): types.WebRtcTransport | undefined {
    return this.#transports.recv;
  }

  /**
   * The Router of the latest receive transport (the room's own or an overflow router), kept after
   * that transport closed so the room can tell whose receivers a dead worker took.
   */
  get recvRouter(): types.Router | undefined {
    return this.#transports.recvRouter;
  }

  connectTransport(req: ConnectTransportRequest): Promise<void> {
    return this.#transports.connect(req);
  }

  restartIce(req: TransportRef): Promise<{ iceParameters: types.IceParameters }> {
    return this.#transports.restartIce(req);
  }

  /**
   * `given` carries what a LiveKit client settled before its offer: the sid it was promised in
   * track_published, and its simulcast layers for TrackInfo.
   */
  publishTrack(req: PublishTrackRequest, given: { sid?: string; layers?: VideoLayer[] } = {}): Promise<{ trackSid: string }> {
    return this.#publishing.publishTrack(req, given);
  }

  /** Throws unless this participant may publish a `kind` track from `source` now (grants, one per source). */
  checkPublish(source: TrackSourceName, kind: 'audio' | 'video'): void {
    this.#publishing.check(source, kind);
  }

  unpublishTrack({ trackSid }: TrackRef): void {
    this.#publishing.unpublish(trackSid);
  }

  setTrackMuted(trackSid: string, muted: boolean): Promise<TrackInfo> {
    return this.#publishing.setMuted(trackSid, muted);
  }

  publishData(req: PublishDataRequest): Promise<{ id: string }> {
    return this.#publishing.publishData(req);
  }

  updateMetadata(req: UpdateMetadataRequest): void {
    if (!this.#permission.canUpdateMetadata) {
      throw permissionDenied('this participant may not update its own metadata, name or attributes (canUpdateOwnMetadata is false)');
    }
    this.applyUpdate(req);
  }

  /** Also the RoomService UpdateParticipant path, which needs no participant grant. */
  applyUpdate(req: { metadata?: string | undefined; name?: string | undefined; attributes?: Record<string, string> | undefined }): void {
    if (req.metadata !== undefined) this.#metadata = req.metadata;
    if (req.name !== undefined && req.name !== '') this.#name = req.name;
    if (req.attributes) {
      // LiveKit semantics: an empty value deletes the attribute.
      for (const [k, v] of Object.entries(req.attributes)) {
        if (v === '') delete this.#attributes[k];
        else this.#attributes[k] = v;
      }
    }
    this.safeEmit('@updated');
  }

  /** New grants apply at once: revoked publishing unpublishes, revoked subscribing unsubscribes. */
  setPermission(permission: ParticipantPermission): void {
    this.#permission = permission.clone();
    this.#publishing.enforce(permission);
    if (!permission.canSubscribe) this.#subscribing.closeAll();
    this.send('permissionsChanged', { permission: permission.toJson() as Record<string, unknown> });
    this.safeEmit('@updated');
  }

  setSubscription(trackSid: string, subscribe: boolean): void {
    this.#subscribing.setSubscription(trackSid, subscribe);
  }

  resumeConsumer(req: ConsumerRef): Promise<void> {
    return this.#subscribing.resume(req);
  }

  pauseConsumer(req: ConsumerRef): Promise<void> {
    return this.#subscribing.pause(req);
  }

  setPreferredLayers(req: PreferredLayersRequest): Promise<void> {
    return this.#subscribing.setPreferredLayers(req);
  }

  // ---- called by the Room ---------------------------------------------------------------------

  /** Subscribes to another participant's track when grants, capabilities and choices allow. */
  subscribeTo(track: PublishedTrack): Promise<void> {
    return this.#subscribing.subscribeTo(track);
  }

  /** The server's data channel towards this participant, fed by the room's data relay. */
  openDataChannel(relayProducer: types.DataProducer): Promise<void> {
    return this.#subscribing.openDataChannel(relayProducer);
  }

  /** Idempotent; closes everything the participant owns and tells its connection why. */
  close(reason: LeaveReason): void {
    if (this.#closed) return;
    this.#closed = true;
    const sink = this.#session.end();
    this.#log.info({ reason }, 'participant left');
    // Closing a transport takes its producers, consumers and data channels with it.
    this.#transports.closeAll();
    this.#publishing.end();
    this.#subscribing.end();
    sink?.close(reason);
    this.safeEmit('@close', reason);
  }
}
