// A live room: one mediasoup Router, its participants, who receives whose tracks, the data relay
// and active-speaker detection. close() is idempotent and takes everything the room owns with it
// in one cascade (participants → transports → producers/consumers/data channels → router).
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
  type RelayCodec,
  type RoomCloseReason,
  type RoomEvents,
  type RoomInfo,
  type RoomMedia,
  type Viewer,
} from './RoomTypes.ts';

export class RoomImpl extends TypedEmitter<RoomEvents> {
  readonly #info: RoomInfo;
  readonly #media: RoomMedia;
  readonly #transport: TransportSettings;
  readonly #codec: RelayCodec;
  readonly #viewerRouter: (mediaCodecs: types.RtpCodecCapability[]) => Promise<types.Router>;
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
    log,
  }: {
    info: RoomInfo;
    media: RoomMedia;
    transport: TransportSettings;
    codec: RelayCodec;
    /** A Router for one viewer (on any worker), with the viewer's codecs. */
    viewerRouter: (mediaCodecs: types.RtpCodecCapability[]) => Promise<types.Router>;
    log: Logger;
  }) {
    super();
    this.#info = info.clone();
    this.#media = media;
    this.#transport = transport;
    this.#codec = codec;
    this.#viewerRouter = viewerRouter;
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

  /** A DirectTransport of the room's own, for an edge that frames data channels itself (LiveKit's DCEP). */
  createDataSource(): Promise<types.DirectTransport> {
    return this.#media.router.createDirectTransport();
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

  #visibleOthers(self: Participant): Participant[] {
    return [...this.#participants.values()].filter((p) => p !== self && !p.hidden);
  }

  #others(self: Participant): Participant[] {
    return [...this.#participants.values()].filter((p) => p !== self);
  }

  /** Snapshot for a joining participant: what it may see of the room. */
  snapshotFor(self: Participant): { room: RoomInfo; participants: ParticipantInfo[]; activeSpeakers: ActiveSpeaker[] } {
    // Speakers are pushed on change only, so a newcomer needs the current list here.
    return { room: this.info(), participants: this.#visibleOthers(self).map((p) => p.info()), activeSpeakers: [...this.#speakers] };
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

    const init: ParticipantInit = { ...req, router: this.#media.router, transport: this.#transport, log: this.#log };
    const p = new Participant(init);
    this.#participants.set(p.identity, p);
    p.attach(sink);
    this.#wire(p);
    if (!p.hidden) for (const o of this.#visibleOthers(p)) o.send('participantJoined', { participant: json(p.info()) });
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
        for (const o of this.#visibleOthers(p)) o.send('trackPublished', { participantIdentity: p.identity, track: json(track.info) });
        for (const o of this.#others(p)) this.#subscribe(o, track);
      }
      this.safeEmit('@trackpublished', p, track.info.clone());
    });
    p.on('@trackunpublished', (track) => {
      if (!p.hidden) {
        for (const o of this.#visibleOthers(p)) o.send('trackUnpublished', { participantIdentity: p.identity, trackSid: track.info.sid });
      }
      this.safeEmit('@trackunpublished', p, track.info.clone());
    });
    p.on('@trackmuted', (track) => {
      if (p.hidden) return;
      for (const o of this.#visibleOthers(p)) {
        o.send('trackMuted', { participantIdentity: p.identity, trackSid: track.info.sid, muted: track.info.muted });
      }
    });
    p.on('@updated', () => {
      if (p.hidden) return;
      for (const o of this.#visibleOthers(p)) o.send('participantUpdated', { participant: json(p.info()) });
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
      if (!p.hidden) for (const o of this.#visibleOthers(p)) o.send('participantLeft', { identity: p.identity, sid: p.sid });
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
    for (const o of this.#visibleOthers(p)) for (const t of o.tracks) this.#subscribe(p, t);
    // A participant with its own data path gets data through it, not the relay channel.
    if (p.recvTransport && !p.dataPath && !this.#relays.has(p.identity)) {
      try {
        const relay = await this.#media.dataRelay.produceData({ label: this.#codec.label, protocol: this.#codec.protocol });
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
    for (const o of this.#visibleOthers(viewer)) {
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
