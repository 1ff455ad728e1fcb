// A live room: one mediasoup Router, its participants, who receives whose tracks, the data relay
// and active-speaker detection. close() is idempotent and takes everything the room owns with it
// in one cascade (participants → transports → producers/consumers/data channels → routers).
// Receivers that outgrow the room's worker go on overflow Routers on other workers, one per worker,
// each fed from the room's Router by pipeToRouter (mediasoup's way to spread a room over cores);
// producers, the audio level observer and upstream data stay on the room's Router.
import { ParticipantInfo_Kind } from '@livekit/protocol';
import type { types } from 'mediasoup';
import { TypedEmitter } from '../emitter.ts';
import type { Logger } from '../logger.ts';
import { openRtpSend, type RtpSend } from '../media/rtpSend.ts';
import { createServerWebRtcTransport } from '../media/webrtcTransport.ts';
import { failedPrecondition, invalidArgument, participantNotFound, resourceExhausted } from './errors.ts';
import { Participant, type ParticipantInit } from './Participant.ts';
import type { ActiveSpeaker, ParticipantJoin, PublishedTrack, SignalSink, TransportSettings } from './ParticipantTypes.ts';
import {
  LEAVE_REASON_FOR_CLOSE,
  type ParticipantInfo,
  type ReceiverPlacement,
  type RelayCodec,
  type RoomCloseReason,
  type RoomEvents,
  type RoomInfo,
  type RoomMedia,
  type Viewer,
} from './RoomTypes.ts';

/** The room's Router on another worker, for receivers its own worker has no room for. */
interface Overflow {
  readonly router: types.Router;
  readonly pid: number;
  /** Producer id → its pipe onto this router, in flight or done (piping twice would fail). */
  readonly piped: Map<string, Promise<void>>;
  /** The server's data channels towards receivers on this router (the room's relay, their side). */
  readonly dataRelay: types.DirectTransport;
}

export class RoomImpl extends TypedEmitter<RoomEvents> {
  readonly #info: RoomInfo;
  readonly #media: RoomMedia;
  readonly #transport: TransportSettings;
  readonly #codec: RelayCodec;
  readonly #viewerRouter: (mediaCodecs: types.RtpCodecCapability[]) => Promise<types.Router>;
  readonly #placement: ReceiverPlacement | undefined;
  /** Worker pid → the room's overflow router there (`value` once open). */
  readonly #overflow = new Map<number, { ready: Promise<Overflow>; value?: Overflow }>();
  readonly #log: Logger;
  readonly #participants = new Map<string, Participant>();
  /** identity → the server's data producer feeding that participant's data channel. */
  readonly #relays = new Map<string, types.DataProducer>();
  #speakers: ActiveSpeaker[] = [];
  #closed = false;

  constructor({
    info,
    media,
    transport,
    codec,
    viewerRouter,
    placement,
    log,
  }: {
    info: RoomInfo;
    media: RoomMedia;
    transport: TransportSettings;
    codec: RelayCodec;
    /** A Router for one viewer (on any worker), with the viewer's codecs. */
    viewerRouter: (mediaCodecs: types.RtpCodecCapability[]) => Promise<types.Router>;
    /** Without it every receiver stays on the room's Router. */
    placement?: ReceiverPlacement;
    log: Logger;
  }) {
    super();
    this.#info = info.clone();
    this.#media = media;
    this.#transport = transport;
    this.#codec = codec;
    this.#viewerRouter = viewerRouter;
    this.#placement = placement;
    this.#log = log.child({ room: info.name, sid: info.sid });
    // The worker died under us: the room cannot carry media any more, so it ends rather than lingering.
    media.router.on('workerclose', () => this.close('worker_died'));
    media.audioLevels.on('volumes', (volumes: types.AudioLevelObserverVolume[]) => this.#setSpeakers(volumes.map((v) => ({ producer: v.producer, level: v.volume }))));
    media.audioLevels.on('silence', () => this.#setSpeakers([]));
    this.onListenerError((event, err) => this.#log.error({ event, err }, 'room event listener threw'));
  }

  get name(): string {
    return this.#info.name;
  }

  get sid(): string {
    return this.#info.sid;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** For tests and benchmarks that tap media themselves; the gateway's edges use the operations below. */
  get routerForTesting(): types.Router {
    return this.#media.router;
  }

  /** What the room's Router can receive and send: a client's device loads it before its first transport. */
  get rtpCapabilities(): types.RtpCapabilities {
    return this.#media.router.rtpCapabilities;
  }

  // ---- server-side media (the edges' way in: none of them holds the room's Router) -------------

  /**
   * A paused PlainTransport consumer sending `track`'s RTP to a local receiver (an egress worker's
   * FFmpeg). The caller closes it when done; the room closing closes it too.
   */
  openTap(track: Pick<PublishedTrack, 'producer'>, listenIp: string): Promise<RtpSend> {
    return openRtpSend(this.#media.router, track.producer, listenIp);
  }

  /**
   * Opens a viewer (WHEP): a Router with `mediaCodecs`, so its consumers send the payload types the
   * viewer offered, and a WebRtcTransport on it. Codecs that cannot share a Router are the caller's
   * invalid_argument; nothing is left open when this throws.
   */
  async openViewer(mediaCodecs: types.RtpCodecCapability[], appData: Record<string, unknown>): Promise<Viewer> {
    let router: types.Router;
    try {
      router = await this.#viewerRouter(mediaCodecs);
    } catch (err) {
      throw invalidArgument((err as Error).message);
    }
    let transport: types.WebRtcTransport;
    try {
      transport = await createServerWebRtcTransport(router, this.#transport, appData);
    } catch (err) {
      router.close();
      throw err;
    }
    transport.observer.once('close', () => router.close());
    const source = this.#media.router;
    return {
      transport,
      async consume(track, rtpCapabilities) {
        await source.pipeToRouter({ producerId: track.producer.id, router });
        return transport.consume({ producerId: track.producer.id, rtpCapabilities, paused: false });
      },
    };
  }

  /**
   * A DirectTransport for an edge that frames data channels itself (LiveKit's DCEP): on the Router of
   * `receiver`'s receive transport, so that transport can consume what it produces.
   */
  createDataSource(receiver?: Participant): Promise<types.DirectTransport> {
    return (receiver?.recvRouter ?? this.#media.router).createDirectTransport();
  }

  // ---- receivers across workers --------------------------------------------------------------

  /** For tests and benchmarks: the worker pid of each participant's receive transport. */
  receiverWorkersForTesting(): Map<string, number | undefined> {
    const out = new Map<string, number | undefined>();
    for (const p of this.#participants.values()) {
      const router = p.recvTransport ? p.recvRouter : undefined;
      out.set(p.identity, router ? this.#placement?.workerPidOf(router) : undefined);
    }
    return out;
  }

  /**
   * For benchmarks that consume with their own transports: the Router the placement gives a new
   * receiver now, with `producer` (the room's) piped onto it when it is an overflow router.
   */
  async receiverRouterForTesting(producer: types.Producer): Promise<types.Router> {
    const router = await this.#receiverRouter();
    if (router !== this.#media.router) await this.#pipeTo(producer, router);
    return router;
  }

  /** For tests: the room's overflow routers open now. */
  get overflowRoutersForTesting(): types.Router[] {
    return [...this.#overflow.values()].flatMap((e) => (e.value ? [e.value.router] : []));
  }

  /** For tests: the worker pid of the room's own Router. */
  get workerPidForTesting(): number | undefined {
    return this.#placement?.workerPidOf(this.#media.router);
  }

  /** Where a new receive transport goes: the placement's choice, the room's own Router if that fails. */
  async #receiverRouter(): Promise<types.Router> {
    if (this.#closed) throw failedPrecondition(`room '${this.name}' is closed`);
    const origin = this.#media.router;
    const pid = this.#placement?.receiverWorker(origin);
    if (pid === undefined || pid === this.#placement?.workerPidOf(origin)) return origin;
    try {
      return (await this.#overflowOn(pid)).router;
    } catch (err) {
      // A worker that died or is restarting: the receiver is better served by the busy worker than refused.
      this.#log.warn({ pid, err: (err as Error).message }, 'could not open an overflow router; the receiver stays on the room worker');
      return origin;
    }
  }

  #overflowOn(pid: number): Promise<Overflow> {
    const existing = this.#overflow.get(pid);
    if (existing) return existing.ready;
    const entry: { ready: Promise<Overflow>; value?: Overflow } = { ready: this.#openOverflow(pid) };
    this.#overflow.set(pid, entry);
    entry.ready.then(
      (o) => (entry.value = o),
      () => {
        if (this.#overflow.get(pid) === entry) this.#overflow.delete(pid);
      },
    );
    return entry.ready;
  }

  async #openOverflow(pid: number): Promise<Overflow> {
    const router = await this.#placement!.createRouterOn(pid, { room: this.name, overflow: true });
    let dataRelay: types.DirectTransport;
    try {
      dataRelay = await router.createDirectTransport();
      // The room closed while mediasoup worked: close() did not see this router.
      if (this.#closed) throw failedPrecondition(`room '${this.name}' is closed`);
    } catch (err) {
      router.close();
      throw err;
    }
    const overflow: Overflow = { router, pid, piped: new Map(), dataRelay };
    router.on('workerclose', () => this.#overflowLost(overflow));
    router.observer.once('close', () => {
      if (this.#overflow.get(pid)?.value === overflow) this.#overflow.delete(pid);
    });
    this.#log.info({ pid, router: router.id }, 'overflow router opened: new receivers go to another worker');
    return overflow;
  }

  /**
   * The worker under an overflow router died: its consumers are gone with it, so its receivers
   * leave with MEDIA_FAILURE and rejoin (placed anew); the room and everyone else go on.
   */
  #overflowLost(o: Overflow): void {
    if (this.#closed) return;
    const lost = [...this.#participants.values()].filter((p) => p.recvRouter === o.router);
    this.#log.error({ pid: o.pid, receivers: lost.length }, 'the worker of an overflow router died; its receivers leave to rejoin');
    for (const p of lost) p.close('MEDIA_FAILURE');
  }

  #overflowOf(router: types.Router): Overflow | undefined {
    for (const entry of this.#overflow.values()) if (entry.value?.router === router) return entry.value;
    return undefined;
  }

  /** Pipes `producer` from the room's Router onto overflow router `target`, once. */
  #pipeTo(producer: types.Producer, target: types.Router): Promise<void> {
    const o = this.#overflowOf(target);
    if (!o) return Promise.reject(failedPrecondition('the receive transport\'s router is gone'));
    const existing = o.piped.get(producer.id);
    if (existing) return existing;
    const piping = this.#media.router.pipeToRouter({ producerId: producer.id, router: target }).then(() => undefined);
    o.piped.set(producer.id, piping);
    const forget = () => {
      if (o.piped.get(producer.id) === piping) o.piped.delete(producer.id);
    };
    piping.catch(forget); // a failed pipe is tried again by the next subscriber
    producer.observer.once('close', forget);
    return piping;
  }

  /** The room's relay transport on `router`'s side: the room's own, or the overflow router's. */
  #dataRelayOn(router: types.Router | undefined): types.DirectTransport {
    if (!router || router === this.#media.router) return this.#media.dataRelay;
    const o = this.#overflowOf(router);
    if (!o) throw failedPrecondition('the receive transport\'s router is gone');
    return o.dataRelay;
  }

  get participantCount(): number {
    return this.#participants.size;
  }

  /** Who speaks now, loudest first (room composite layouts follow it). */
  get activeSpeakers(): ActiveSpeaker[] {
    return [...this.#speakers];
  }

  /**
   * Participants that keep the room alive: everyone but agents and egress, which LiveKit calls
   * "dependent" (they are there for the others, so a room left to them alone closes).
   */
  get independentCount(): number {
    let n = 0;
    for (const p of this.#participants.values()) if (!isDependent(p.kind)) n++;
    return n;
  }

  info(): RoomInfo {
    const info = this.#info.clone();
    info.numParticipants = this.#participants.size;
    info.numPublishers = [...this.#participants.values()].filter((p) => p.tracks.length > 0).length;
    return info;
  }

  /** Everyone, hidden participants included: this is the admin view (RoomService). */
  participants(): ParticipantInfo[] {
    return [...this.#participants.values()].map((p) => p.info());
  }

  participant(identity: string): Participant {
    const p = this.#participants.get(identity);
    if (!p) throw participantNotFound(this.name, identity);
    return p;
  }

  /** Everyone `self` may see: the others but hidden participants. */
  visibleOthersOf(self: Participant): Participant[] {
    return [...this.#participants.values()].filter((p) => p !== self && !p.hidden);
  }

  #others(self: Participant): Participant[] {
    return [...this.#participants.values()].filter((p) => p !== self);
  }

  /** Snapshot for a joining participant: what it may see of the room. */
  snapshotFor(self: Participant): { room: RoomInfo; participants: ParticipantInfo[]; activeSpeakers: ActiveSpeaker[] } {
    // Speakers are pushed on change only, so a newcomer needs the current list here.
    return { room: this.info(), participants: this.visibleOthersOf(self).map((p) => p.info()), activeSpeakers: [...this.#speakers] };
  }

  /**
   * Adds a participant. A participant with the same identity is replaced (DUPLICATE_IDENTITY).
   * Hidden participants, recorders and dependent participants (agents, egress) do not count towards
   * max_participants: an agent dispatched to a full room still joins, as in LiveKit.
   */
  join(req: ParticipantJoin, sink: SignalSink): Participant {
    if (this.#closed) throw failedPrecondition(`room '${this.name}' is closed`);
    const existing = this.#participants.get(req.identity);
    const counts = (p: { hidden: boolean; recorder: boolean; kind: ParticipantInfo_Kind | undefined }) => !p.hidden && !p.recorder && !isDependent(p.kind);
    const counted = [...this.#participants.values()].filter((p) => counts(p) && p !== existing).length;
    const max = this.#info.maxParticipants;
    if (max > 0 && counts({ hidden: req.permission.hidden, recorder: req.permission.recorder, kind: req.kind }) && counted >= max) {
      throw resourceExhausted(`room '${this.name}' is full (max_participants ${max})`);
    }
    existing?.close('DUPLICATE_IDENTITY');

    const init: ParticipantInit = {
      ...req,
      router: this.#media.router,
      receiverRouter: () => this.#receiverRouter(),
      pipe: (producer, target) => this.#pipeTo(producer, target),
      transport: this.#transport,
      log: this.#log,
    };
    const p = new Participant(init);
    this.#participants.set(p.identity, p);
    p.attach(sink);
    this.#wire(p);
    if (!p.hidden) for (const o of this.visibleOthersOf(p)) o.send('participantJoined', { participant: json(p.info()) });
    this.safeEmit('@participantjoined', p);
    return p;
  }

  #wire(p: Participant): void {
    p.on('@ready', () => this.#refreshSubscriptions(p));
    p.on('@trackpublished', (track) => {
      if (track.producer.kind === 'audio') {
        this.#media.audioLevels.addProducer({ producerId: track.producer.id }).catch(() => undefined);
      }
      // A hidden participant's tracks are as invisible as the participant: nobody is subscribed.
      if (!p.hidden) {
        for (const o of this.visibleOthersOf(p)) o.send('trackPublished', { participantIdentity: p.identity, track: json(track.info) });
        for (const o of this.#others(p)) this.#subscribe(o, track);
      }
      this.safeEmit('@trackpublished', p, track.info.clone());
    });
    p.on('@trackunpublished', (track) => {
      if (!p.hidden) {
        for (const o of this.visibleOthersOf(p)) o.send('trackUnpublished', { participantIdentity: p.identity, trackSid: track.info.sid });
      }
      this.safeEmit('@trackunpublished', p, track.info.clone());
    });
    p.on('@trackmuted', (track) => {
      if (p.hidden) return;
      for (const o of this.visibleOthersOf(p)) {
        o.send('trackMuted', { participantIdentity: p.identity, trackSid: track.info.sid, muted: track.info.muted });
      }
    });
    p.on('@updated', () => {
      if (p.hidden) return;
      for (const o of this.visibleOthersOf(p)) o.send('participantUpdated', { participant: json(p.info()) });
    });
    p.on('@dataproducer', (dp) => {
      this.#relayFrom(p, dp).catch((err: unknown) =>
        this.#log.warn({ participant: p.identity, err: (err as Error).message }, 'could not relay data channel'),
      );
    });
    p.on('@close', (reason) => {
      if (this.#participants.get(p.identity) === p) this.#participants.delete(p.identity);
      const relay = this.#relays.get(p.identity);
      if (relay && this.#participants.get(p.identity) === undefined) {
        relay.close();
        this.#relays.delete(p.identity);
      }
      if (!p.hidden) for (const o of this.visibleOthersOf(p)) o.send('participantLeft', { identity: p.identity, sid: p.sid });
      this.safeEmit('@participantleft', p, reason);
    });
  }

  #subscribe(subscriber: Participant, track: PublishedTrack): void {
    subscriber.subscribeTo(track).catch((err: unknown) =>
      this.#log.warn({ subscriber: subscriber.identity, track: track.info.sid, err: (err as Error).message }, 'subscribe failed'),
    );
  }

  /** A participant can now receive (capabilities known and/or recv transport created). */
  async #onReady(p: Participant): Promise<void> {
    for (const o of this.visibleOthersOf(p)) for (const t of o.tracks) this.#subscribe(p, t);
    // A participant with its own data path gets data through it, not the relay channel.
    if (p.recvTransport && !p.dataPath && !this.#relays.has(p.identity)) {
      try {
        const relay = await this.#dataRelayOn(p.recvRouter).produceData({ label: this.#codec.label, protocol: this.#codec.protocol });
        if (p.closed || this.#relays.has(p.identity)) {
          relay.close();
          return;
        }
        this.#relays.set(p.identity, relay);
        await p.openDataChannel(relay);
      } catch (err) {
        this.#log.warn({ participant: p.identity, err: (err as Error).message }, 'could not open data channel');
      }
    }
  }

  /** Re-evaluates a participant's subscriptions (after UpdateSubscriptions or a permission change). */
  resubscribe(p: Participant): void {
    this.#refreshSubscriptions(p);
  }

  /** #onReady from an event or a synchronous caller: a failure is logged, not left unhandled. */
  #refreshSubscriptions(p: Participant): void {
    this.#onReady(p).catch((err: unknown) => this.#log.error({ err, participant: p.identity }, 'updating subscriptions failed'));
  }

  async #relayFrom(p: Participant, dp: types.DataProducer): Promise<void> {
    const consumer = await this.#media.dataRelay.consumeData({ dataProducerId: dp.id });
    consumer.on('message', (message: Buffer) => {
      if (!p.permission.canPublishData) return; // revoked since the channel opened
      if (p.dataPath) {
        const read = p.dataPath.read(message);
        if (!read) return;
        const { destinations, ...data } = read;
        this.deliver(data.payload, data.topic, destinations, p.identity, !p.hidden, { reliable: data.reliable, ...(data.packet ? { packet: data.packet } : {}), fromSid: p.sid });
        return;
      }
      const decoded = this.#codec.decode(message);
      if (!decoded) return; // not a frame of the relay's protocol: dropped, like any malformed input
      // A hidden sender stays anonymous; its own echo is still skipped by identity.
      this.deliver(decoded.payload, decoded.topic, decoded.destinations, p.identity, !p.hidden);
    });
  }

  /**
   * Delivers a data message to everyone (or the named identities) but its sender. Returns recipients.
   * `payload` undefined is a LiveKit-only packet (`extra.packet`), which only LiveKit clients read.
   */
  deliver(
    payload: Uint8Array | undefined,
    topic: string | undefined,
    destinations: string[],
    from?: string,
    showSender = true,
    extra: { reliable?: boolean; packet?: Uint8Array; fromSid?: string } = {},
  ): number {
    const frame = payload ? this.#codec.encode({ payload, ...(topic ? { topic } : {}), ...(from && showSender ? { from } : {}) }) : undefined;
    let count = 0;
    for (const p of this.#participants.values()) {
      const identity = p.identity;
      if (identity === from) continue;
      if (destinations.length > 0 && !destinations.includes(identity)) continue;
      if (p.dataPath) {
        p.dataPath.deliver({
          ...(payload ? { payload } : {}),
          ...(topic ? { topic } : {}),
          ...(from && showSender ? { from, ...(extra.fromSid ? { fromSid: extra.fromSid } : {}) } : {}),
          reliable: extra.reliable ?? true,
          ...(extra.packet ? { packet: extra.packet } : {}),
        });
        count++;
        continue;
      }
      const relay = this.#relays.get(identity);
      if (!frame || !relay || relay.closed) continue;
      relay.send(Buffer.from(frame));
      count++;
    }
    return count;
  }

  #setSpeakers(entries: { producer: types.Producer; level: number }[]): void {
    const speakers = entries
      .map(({ producer, level }) => {
        const owner = [...this.#participants.values()].find((p) => p.tracks.some((t) => t.producer === producer));
        return owner && !owner.hidden ? { identity: owner.identity, sid: owner.sid, level: Math.round((level + 127) / 1.27) / 100 } : undefined;
      })
      .filter((s): s is ActiveSpeaker => s !== undefined);
    const same = speakers.map((s) => s.identity).join('\u0000') === this.#speakers.map((s) => s.identity).join('\u0000');
    this.#speakers = speakers;
    if (same) return; // levels alone changing is not worth a message
    for (const p of this.#participants.values()) p.send('activeSpeakers', { speakers });
  }

  setMetadata(metadata: string): void {
    this.#info.metadata = metadata;
    for (const p of this.#participants.values()) p.send('roomMetadata', { metadata });
  }

  /** A published track of a participant visible to `viewer`, or undefined. */
  visibleTrack(viewer: Participant, trackSid: string): PublishedTrack | undefined {
    for (const o of this.visibleOthersOf(viewer)) {
      const t = o.track(trackSid);
      if (t) return t;
    }
    return undefined;
  }

  close(reason: RoomCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#log.info({ reason, participants: this.#participants.size }, 'room closed');
    for (const p of [...this.#participants.values()]) p.close(LEAVE_REASON_FOR_CLOSE[reason]);
    // Overflow routers still opening see #closed and close themselves.
    for (const entry of this.#overflow.values()) entry.value?.router.close();
    this.#overflow.clear();
    this.#media.router.close();
    this.safeEmit('@close', reason);
  }
}

/** LiveKit's dependent participant kinds: they neither start a room's life nor keep it going. */
export function isDependent(kind: ParticipantInfo_Kind | undefined): boolean {
  return kind === ParticipantInfo_Kind.AGENT || kind === ParticipantInfo_Kind.EGRESS;
}

function json(message: { toJson(): unknown }): Record<string, unknown> {
  return message.toJson() as Record<string, unknown>;
}
