// One participant's media: its WebRTC transports, the tracks it publishes (Producers), what it
// receives (Consumers) and its data channels. Permissions are checked here on every request, so
// a grant changed live (RoomService UpdateParticipant) takes effect on the next one.
// Cross-participant work (who subscribes to what) is the Room's; the participant only acts on itself.
import {
  ParticipantInfo,
  ParticipantInfo_Kind,
  ParticipantInfo_State,
  ParticipantPermission,
  TrackInfo,
  TrackSource,
  TrackType,
  type VideoLayer,
} from '@livekit/protocol';
import type { types } from 'mediasoup';
import { TypedEmitter } from '../emitter.ts';
import { newId } from '../ids.ts';
import { rtpParametersProblem } from '../media/codecs.ts';
import { createServerWebRtcTransport } from '../media/webrtcTransport.ts';
import type { Logger } from '../logger.ts';
import { failedPrecondition, invalidArgument, mediasoupCall, notFound, permissionDenied, resourceExhausted } from './errors.ts';
import type {
  ConnectTransportRequest,
  ConsumerRef,
  CreateTransportRequest,
  DataPath,
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

export const SOURCE_BY_NAME: Record<TrackSourceName, TrackSource> = {
  camera: TrackSource.CAMERA,
  microphone: TrackSource.MICROPHONE,
  screen_share: TrackSource.SCREEN_SHARE,
  screen_share_audio: TrackSource.SCREEN_SHARE_AUDIO,
};
const SOURCE_KIND: Record<TrackSourceName, 'audio' | 'video'> = {
  camera: 'video',
  microphone: 'audio',
  screen_share: 'video',
  screen_share_audio: 'audio',
};

export function sourceNames(sources: TrackSource[]): TrackSourceName[] {
  return (Object.keys(SOURCE_BY_NAME) as TrackSourceName[]).filter((n) => sources.includes(SOURCE_BY_NAME[n]));
}

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
  readonly #router: types.Router;
  readonly #receiverRouter: ParticipantInit['receiverRouter'];
  readonly #pipe: ParticipantInit['pipe'];
  /** The Router of the receive transport, once there is one. */
  #recvRouter: types.Router | undefined;
  readonly #settings: TransportSettings;
  readonly #log: Logger;
  readonly #transports = new Map<string, types.WebRtcTransport>();
  /** Transports the server opened for this participant (ingress PlainTransports, WHIP), not its client. */
  readonly #serverTransports = new Map<string, types.Transport>();
  readonly #tracks = new Map<string, PublishedTrack>();
  /** consumerId → consumer; consumer.appData.trackSid names the track. */
  readonly #consumers = new Map<string, types.Consumer>();
  readonly #dataConsumers: types.DataConsumer[] = [];
  /** What the client was told about each consumer / data channel, re-sent on a resumed session. */
  readonly #consumerOffers = new Map<string, ParticipantSignals['newConsumer']>();
  readonly #dataOffers: ParticipantSignals['newDataConsumer'][] = [];
  /** Track sids with a consume in flight, so two triggers cannot create two consumers. */
  readonly #subscribing = new Set<string>();
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Explicit subscribe/unsubscribe choices; tracks not in here follow auto-subscribe. */
  readonly #subscriptions = new Map<string, boolean>();
  #rtpCapabilities: types.RtpCapabilities | undefined;
  #sink: SignalSink | undefined;
  #closed = false;
  /** Set by a signaling edge whose clients frame data themselves; see DataPath. */
  dataPath: DataPath | undefined;

  constructor(init: ParticipantInit) {
    super();
    this.identity = init.identity;
    this.kind = init.kind ?? ParticipantInfo_Kind.STANDARD;
    this.#name = init.name;
    this.#metadata = init.metadata;
    this.#attributes = { ...init.attributes };
    this.#permission = init.permission.clone();
    this.#router = init.router;
    this.#receiverRouter = init.receiverRouter;
    this.#pipe = init.pipe;
    this.#settings = init.transport;
    this.#log = init.log.child({ participant: init.identity, sid: this.sid });
    this.onListenerError((event, err) => this.#log.error({ event, err }, 'participant listener threw'));
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
    return [...this.#tracks.values()];
  }

  track(trackSid: string): PublishedTrack | undefined {
    return this.#tracks.get(trackSid);
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
      isPublisher: this.#tracks.size > 0,
      kind: this.kind,
    });
  }

  attach(sink: SignalSink): void {
    clearTimeout(this.#graceTimer);
    const old = this.#sink;
    this.#sink = sink;
    if (old && old !== sink) old.superseded();
  }

  /**
   * The signaling connection went away. The session (transports, tracks) is held for `graceMs` so
   * the client can resume it; after that the participant leaves with CONNECTION_LOST.
   */
  detach(sink: SignalSink, graceMs: number): void {
    if (this.#sink !== sink || this.#closed) return;
    this.#sink = undefined;
    clearTimeout(this.#graceTimer);
    this.#graceTimer = setTimeout(() => {
      if (!this.#sink) this.close('CONNECTION_LOST');
    }, graceMs);
  }

  /** For a resumed session's `joined`: the consumers and data channels held for this participant. */
  offers(): { consumers: ParticipantSignals['newConsumer'][]; dataConsumers: ParticipantSignals['newDataConsumer'][] } {
    return { consumers: [...this.#consumerOffers.values()], dataConsumers: [...this.#dataOffers] };
  }

  send<K extends ParticipantSignalName>(event: K, data: ParticipantSignals[K]): void {
    this.#sink?.send(event, data);
  }

  // ---- requests from the participant's own connection ---------------------------------------

  ready(data: ReadyRequest): void {
    this.#rtpCapabilities = data.rtpCapabilities as types.RtpCapabilities;
    this.safeEmit('@ready');
  }

  async createTransport({ direction }: CreateTransportRequest) {
    if (direction === 'send' && !this.#permission.canPublish && !this.#permission.canPublishData) {
      throw permissionDenied('this participant may not publish (canPublish and canPublishData are false)');
    }
    if (direction === 'recv' && [...this.#transports.values()].some((t) => t.appData.direction === 'recv')) {
      throw failedPrecondition('a receive transport already exists');
    }
    if (this.#transports.size >= 4) throw resourceExhausted('at most 4 transports per participant');
    // Receivers are what outgrows a worker, so only they may go to another one; publishing stays on the room's.
    const router = direction === 'recv' ? await this.#receiverRouter() : this.#router;
    const transport = await router.createWebRtcTransport({
      listenIps: [{ ip: this.#settings.listenIp, ...(this.#settings.announcedIp ? { announcedIp: this.#settings.announcedIp } : {}) }],
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      enableSctp: true,
      numSctpStreams: { OS: 1024, MIS: 1024 },
      initialAvailableOutgoingBitrate: 1_000_000,
      appData: { direction, participant: this.identity },
    });
    if (this.#closed) {
      transport.close(); // replaced or removed while mediasoup worked
      throw failedPrecondition('participant has left');
    }
    this.#transports.set(transport.id, transport);
    if (direction === 'recv') this.#recvRouter = router;
    transport.on('dtlsstatechange', (state) => {
      if (state === 'failed' || state === 'closed') this.#log.warn({ transport: transport.id, state }, 'transport DTLS ended');
    });
    transport.observer.once('close', () => this.#transports.delete(transport.id));
    if (direction === 'recv') this.safeEmit('@ready'); // a recv transport lets queued subscriptions proceed
    return {
      id: transport.id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
      sctpParameters: transport.sctpParameters,
      iceServers: this.#settings.iceServers(this.identity),
    };
  }

  #transport(id: string): types.WebRtcTransport {
    const t = this.#transports.get(id);
    if (!t) throw notFound(`transport '${id}' not found`);
    return t;
  }

  /**
   * A send transport the server opens for this participant (an ingress PlainTransport fed by the
   * local FFmpeg, which sends RTP and RTCP on their own ports): publishTrack accepts its id, and it
   * closes with the participant.
   */
  async openPlainSend(listenIp: string): Promise<types.PlainTransport> {
    const transport = await this.#router.createPlainTransport({ listenIp: { ip: listenIp }, rtcpMux: false, comedia: true });
    this.#adoptSendTransport(transport);
    return transport;
  }

  /** The same for a WHIP publisher: a WebRtcTransport whose DTLS and ICE the WHIP edge completes. */
  async openWebRtcSend(appData: Record<string, unknown>): Promise<types.WebRtcTransport> {
    const transport = await createServerWebRtcTransport(this.#router, this.#settings, appData);
    this.#adoptSendTransport(transport);
    return transport;
  }

  #adoptSendTransport(transport: types.Transport): void {
    if (this.#closed) {
      transport.close();
      throw failedPrecondition('participant has left');
    }
    transport.appData.direction = 'send';
    this.#serverTransports.set(transport.id, transport);
    transport.observer.once('close', () => this.#serverTransports.delete(transport.id));
  }

  get recvTransport(): types.WebRtcTransport | undefined {
    return [...this.#transports.values()].find((t) => t.appData.direction === 'recv');
  }

  /**
   * The Router of the latest receive transport (the room's own or an overflow router), kept after
   * that transport closed so the room can tell whose receivers a dead worker took.
   */
  get recvRouter(): types.Router | undefined {
    return this.#recvRouter;
  }

  async connectTransport({ transportId, dtlsParameters }: ConnectTransportRequest): Promise<void> {
    await mediasoupCall(() => this.#transport(transportId).connect({ dtlsParameters: dtlsParameters as unknown as types.DtlsParameters }));
  }

  async restartIce({ transportId }: TransportRef) {
    return { iceParameters: await this.#transport(transportId).restartIce() };
  }

  /**
   * `given` carries what a LiveKit client settled before its offer: the sid it was promised in
   * track_published, and its simulcast layers for TrackInfo.
   */
  async publishTrack(req: PublishTrackRequest, given: { sid?: string; layers?: VideoLayer[] } = {}): Promise<{ trackSid: string }> {
    this.checkPublish(req.source, req.kind);
    const transport: types.Transport = this.#serverTransports.get(req.transportId) ?? this.#transport(req.transportId);
    if (transport.appData.direction !== 'send') throw invalidArgument('tracks are published on a send transport');
    // Codec parameters end up in the SDP egress FFmpeg reads: only known keys and plain values.
    const codecProblem = rtpParametersProblem(req.rtpParameters);
    if (codecProblem) throw invalidArgument(codecProblem, 'rtpParameters');
    const producer = await mediasoupCall(() =>
      transport.produce({
        kind: req.kind,
        rtpParameters: req.rtpParameters as unknown as types.RtpParameters,
        paused: req.muted ?? false,
      }),
    );
    const encodings = producer.rtpParameters.encodings ?? [];
    const info = new TrackInfo({
      sid: given.sid ?? newId('TR_'),
      type: req.kind === 'audio' ? TrackType.AUDIO : TrackType.VIDEO,
      name: req.name ?? req.source,
      source: SOURCE_BY_NAME[req.source],
      muted: req.muted ?? false,
      simulcast: encodings.length > 1,
      mimeType: producer.rtpParameters.codecs[0]?.mimeType ?? '',
      width: req.width ?? 0,
      height: req.height ?? 0,
      layers: given.layers ?? [],
    });
    const track: PublishedTrack = { info, producer, ownerIdentity: this.identity };
    this.#tracks.set(info.sid, track);
    producer.observer.once('close', () => {
      if (this.#tracks.delete(info.sid)) this.safeEmit('@trackunpublished', track);
    });
    this.#log.info({ track: info.sid, kind: req.kind, source: req.source, simulcast: info.simulcast }, 'track published');
    this.safeEmit('@trackpublished', track);
    return { trackSid: info.sid };
  }

  /** Throws unless this participant may publish a `kind` track from `source` now (grants, one per source). */
  checkPublish(source: TrackSourceName, kind: 'audio' | 'video'): void {
    if (!this.#permission.canPublish) throw permissionDenied('this participant may not publish tracks (canPublish is false)');
    const allowed = this.#permission.canPublishSources;
    if (allowed.length > 0 && !allowed.includes(SOURCE_BY_NAME[source])) {
      throw permissionDenied(`this participant may not publish '${source}' (allowed: ${sourceNames(allowed).join(', ')})`);
    }
    if (SOURCE_KIND[source] !== kind) throw invalidArgument(`source '${source}' must be a ${SOURCE_KIND[source]} track`);
    if (this.tracks.some((t) => t.info.source === SOURCE_BY_NAME[source])) {
      throw failedPrecondition(`a '${source}' track is already published; unpublish it first`);
    }
  }

  unpublishTrack({ trackSid }: TrackRef): void {
    const track = this.#tracks.get(trackSid);
    if (!track) throw notFound(`track '${trackSid}' is not published by '${this.identity}'`);
    track.producer.close(); // the producer's close observer unpublishes it
  }

  async setTrackMuted(trackSid: string, muted: boolean): Promise<TrackInfo> {
    const track = this.#tracks.get(trackSid);
    if (!track) throw notFound(`track '${trackSid}' is not published by '${this.identity}'`);
    if (track.info.muted !== muted) {
      if (muted) await track.producer.pause();
      else await track.producer.resume();
      track.info.muted = muted;
      this.safeEmit('@trackmuted', track);
    }
    return track.info.clone();
  }

  async publishData(req: PublishDataRequest) {
    if (!this.#permission.canPublishData) throw permissionDenied('this participant may not send data (canPublishData is false)');
    const transport: types.Transport = this.#serverTransports.get(req.transportId) ?? this.#transport(req.transportId);
    if (transport.appData.direction !== 'send') throw invalidArgument('data is published on a send transport');
    const dataProducer = await mediasoupCall(() =>
      transport.produceData({
        sctpStreamParameters: req.sctpStreamParameters as unknown as types.SctpStreamParameters,
        label: req.label ?? '',
        protocol: req.protocol ?? '',
        appData: { participant: this.identity },
      }),
    );
    this.safeEmit('@dataproducer', dataProducer);
    return { id: dataProducer.id };
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
    if (!permission.canPublish) for (const t of this.tracks) t.producer.close();
    else if (permission.canPublishSources.length > 0) {
      for (const t of this.tracks) if (!permission.canPublishSources.includes(t.info.source)) t.producer.close();
    }
    if (!permission.canSubscribe) for (const c of [...this.#consumers.values()]) this.#closeConsumer(c);
    this.send('permissionsChanged', { permission: permission.toJson() as Record<string, unknown> });
    this.safeEmit('@updated');
  }

  setSubscription(trackSid: string, subscribe: boolean): void {
    this.#subscriptions.set(trackSid, subscribe);
    if (!subscribe) for (const c of [...this.#consumers.values()]) if (c.appData.trackSid === trackSid) this.#closeConsumer(c);
  }

  #consumer(id: string): types.Consumer {
    const c = this.#consumers.get(id);
    if (!c) throw notFound(`consumer '${id}' not found`);
    return c;
  }

  async resumeConsumer({ consumerId }: ConsumerRef): Promise<void> {
    const c = this.#consumer(consumerId);
    await c.resume();
    if (c.kind === 'video') await c.requestKeyFrame().catch(() => undefined);
  }

  async pauseConsumer({ consumerId }: ConsumerRef): Promise<void> {
    await this.#consumer(consumerId).pause();
  }

  async setPreferredLayers({ consumerId, spatialLayer, temporalLayer }: PreferredLayersRequest): Promise<void> {
    const c = this.#consumer(consumerId);
    if (c.type !== 'simulcast' && c.type !== 'svc') throw failedPrecondition('this consumer has no layers');
    await c.setPreferredLayers({ spatialLayer, ...(temporalLayer !== undefined ? { temporalLayer } : {}) });
  }

  // ---- called by the Room ---------------------------------------------------------------------

  /** Subscribes to another participant's track when grants, capabilities and choices allow. */
  async subscribeTo(track: PublishedTrack): Promise<void> {
    const transport = this.recvTransport;
    if (this.#closed || !transport || !this.#rtpCapabilities || !this.#permission.canSubscribe) return;
    const sid = track.info.sid;
    if (this.#subscriptions.get(sid) === false || this.#subscribing.has(sid)) return;
    if ([...this.#consumers.values()].some((c) => c.appData.trackSid === sid)) return;
    if (track.producer.closed || !this.#router.canConsume({ producerId: track.producer.id, rtpCapabilities: this.#rtpCapabilities })) return;
    this.#subscribing.add(sid);
    let consumer: types.Consumer;
    try {
      const router = this.#recvRouter;
      if (router && router !== this.#router) await this.#pipe(track.producer, router);
      consumer = await transport.consume({
        producerId: track.producer.id,
        rtpCapabilities: this.#rtpCapabilities,
        paused: true, // resumed by the client once its side is ready, then a keyframe is requested
        appData: { trackSid: sid },
      });
    } finally {
      this.#subscribing.delete(sid);
    }
    // Things may have changed while mediasoup worked: left, unsubscribed, grant revoked.
    if (this.#closed || this.#subscriptions.get(sid) === false || !this.#permission.canSubscribe) {
      consumer.close();
      return;
    }
    this.#consumers.set(consumer.id, consumer);
    const gone = () => this.#closeConsumer(consumer);
    consumer.on('producerclose', gone);
    consumer.on('transportclose', gone);
    const offer: ParticipantSignals['newConsumer'] = {
      consumerId: consumer.id,
      producerId: track.producer.id,
      trackSid: sid,
      participantIdentity: track.ownerIdentity,
      kind: consumer.kind,
      rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown>,
      producerPaused: consumer.producerPaused,
    };
    this.#consumerOffers.set(consumer.id, offer);
    this.send('newConsumer', offer);
  }

  #closeConsumer(consumer: types.Consumer): void {
    if (!this.#consumers.delete(consumer.id)) return;
    this.#consumerOffers.delete(consumer.id);
    consumer.close();
    this.send('consumerClosed', { consumerId: consumer.id, trackSid: String(consumer.appData.trackSid) });
  }

  /** The server's data channel towards this participant, fed by the room's data relay. */
  async openDataChannel(relayProducer: types.DataProducer): Promise<void> {
    const transport = this.recvTransport;
    if (!transport || this.#closed) return;
    const dc = await transport.consumeData({ dataProducerId: relayProducer.id });
    if (this.#closed) {
      dc.close();
      return;
    }
    this.#dataConsumers.push(dc);
    const offer: ParticipantSignals['newDataConsumer'] = {
      id: dc.id,
      dataProducerId: relayProducer.id,
      sctpStreamParameters: dc.sctpStreamParameters as unknown as Record<string, unknown>,
      label: dc.label,
      protocol: dc.protocol,
      reliable: true,
    };
    this.#dataOffers.push(offer);
    this.send('newDataConsumer', offer);
  }

  /** Idempotent; closes everything the participant owns and tells its connection why. */
  close(reason: LeaveReason): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#graceTimer);
    this.#log.info({ reason }, 'participant left');
    const sink = this.#sink;
    this.#sink = undefined;
    // Closing a transport takes its producers, consumers and data channels with it.
    for (const t of [...this.#transports.values(), ...this.#serverTransports.values()]) t.close();
    for (const track of [...this.#tracks.values()]) this.safeEmit('@trackunpublished', track);
    this.#tracks.clear();
    this.#consumers.clear();
    sink?.close(reason);
    this.safeEmit('@close', reason);
  }
}
