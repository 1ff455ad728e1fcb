// A participant session, shared by the browser SDK (mediasoup-client) and the Node participant
// (msc-node, the same API on werift): transports, publishing, the subscribe flow the server drives
// (newConsumer → consume → resume), data channels, and typed room events.
// Both libraries are used through the small structural interfaces below.
import { retry, sleep } from '../async.ts';
import { TypedEmitter } from '../emitter.ts';
import { decodeData, encodeData } from '../signaling/dataEnvelope.ts';
import type { Json, ServerEvents, TrackSourceName } from '../signaling/protocol.ts';
import { SignalError, type SignalClient } from './SignalClient.ts';

type Callback<T = void> = (result: T) => void;
type Errback = (err: Error) => void;

export interface ClientProducer {
  readonly id: string;
  close(): void;
}

export interface ClientConsumer {
  readonly id: string;
  readonly track: unknown;
  close(): void;
}

export interface ClientDataProducer {
  readonly readyState: string;
  once(event: 'open', fn: () => void): unknown;
  send(data: unknown): void;
}

export interface ClientDataConsumer {
  readonly readyState: string;
  once(event: 'open', fn: () => void): unknown;
  on(event: 'message', fn: (data: unknown) => void): unknown;
}

export interface ClientTransport {
  readonly id: string;
  on(event: 'connect', fn: (p: { dtlsParameters: unknown }, cb: Callback, eb: Errback) => void): unknown;
  on(event: 'produce', fn: (p: { kind: 'audio' | 'video'; rtpParameters: unknown; appData: Json }, cb: Callback<{ id: string }>, eb: Errback) => void): unknown;
  on(event: 'producedata', fn: (p: { sctpStreamParameters: unknown; label: string; protocol: string }, cb: Callback<{ id: string }>, eb: Errback) => void): unknown;
  produce(opts: { track: unknown; codec?: unknown; encodings?: unknown[]; appData?: Json }): Promise<ClientProducer>;
  consume(opts: { id: string; producerId: string; kind: 'audio' | 'video'; rtpParameters: unknown }): Promise<ClientConsumer>;
  produceData(opts: { ordered?: boolean; maxRetransmits?: number; label?: string }): Promise<ClientDataProducer>;
  consumeData(opts: { id: string; dataProducerId: string; sctpStreamParameters: unknown; label?: string; protocol?: string }): Promise<ClientDataConsumer>;
  close(): void;
}

export interface ClientDevice {
  readonly rtpCapabilities: { codecs?: { mimeType: string }[] };
  readonly sctpCapabilities: unknown;
  load(opts: { routerRtpCapabilities: unknown }): Promise<void>;
  createSendTransport(opts: TransportParams): ClientTransport;
  createRecvTransport(opts: TransportParams): ClientTransport;
}

export interface TransportParams {
  id: string;
  iceParameters: unknown;
  iceCandidates: unknown;
  dtlsParameters: unknown;
  sctpParameters: unknown;
  iceServers?: unknown;
}

export interface RemoteTrack<Track = unknown> {
  trackSid: string;
  participantIdentity: string;
  kind: 'audio' | 'video';
  track: Track;
  consumer: ClientConsumer;
}

export interface DataMessage {
  payload: Uint8Array;
  topic?: string | undefined;
  /** Sender's identity; absent for messages sent with RoomService SendData. */
  from?: string | undefined;
}

export interface PublishOptions {
  source: TrackSourceName;
  name?: string;
  /** mimeType such as 'video/H264' to pick among the device's codecs. */
  mimeType?: string;
  encodings?: unknown[];
}

export type SessionEvents<Track> = {
  participantConnected: [participant: Json];
  participantUpdated: [participant: Json];
  participantDisconnected: [identity: string];
  trackPublished: [participantIdentity: string, track: Json];
  trackUnpublished: [participantIdentity: string, trackSid: string];
  trackMuted: [participantIdentity: string, trackSid: string, muted: boolean];
  trackSubscribed: [track: RemoteTrack<Track>];
  trackUnsubscribed: [trackSid: string];
  dataReceived: [message: DataMessage];
  activeSpeakersChanged: [speakers: ServerEvents['activeSpeakers']['speakers']];
  roomMetadata: [metadata: string];
  permissionsChanged: [permission: Json];
  /** The signaling socket dropped; the session is being resumed on a new one. */
  reconnecting: [];
  reconnected: [];
  disconnected: [reason: string];
};

/** Opens a new signaling connection asking to resume (`reconnect=1`). */
export type Reconnector = () => Promise<{ client: SignalClient; joined: ServerEvents['joined'] }>;

const RECONNECT_DELAYS_MS = [200, 500, 1000, 2000, 4000];

export class Session<Track = unknown> extends TypedEmitter<SessionEvents<Track>> {
  #signal: SignalClient;
  #joined: ServerEvents['joined'];
  readonly #device: ClientDevice;
  #send: ClientTransport | undefined;
  #recv: ClientTransport | undefined;
  readonly #dataProducers = new Map<'reliable' | 'lossy', ClientDataProducer>();
  readonly #remote = new Map<string, RemoteTrack<Track>>();
  readonly #participants = new Map<string, Json>();
  /** Ids of the server's data channels already consumed (kept across a resume). */
  readonly #dataConsumerIds = new Set<string>();
  #speakers: ServerEvents['activeSpeakers']['speakers'];
  #closed = false;
  #leaving = false;
  readonly #reconnect: Reconnector | undefined;
  #dataReadyResolve!: () => void;
  /** Resolves once the server's data channel to this participant is open (messages before it are lost). */
  readonly dataReady = new Promise<void>((resolve) => (this.#dataReadyResolve = resolve));

  protected constructor(signal: SignalClient, joined: ServerEvents['joined'], device: ClientDevice, reconnect?: Reconnector) {
    super();
    this.#signal = signal;
    this.#joined = joined;
    this.#device = device;
    this.#reconnect = reconnect;
    this.#speakers = joined.activeSpeakers;
    for (const p of joined.participants) this.#participants.set(String(p.identity), p);
  }

  /** Loads the device with the room's capabilities, opens the receive side and says `ready`. */
  protected async start(): Promise<void> {
    await this.#device.load({ routerRtpCapabilities: this.#joined.routerRtpCapabilities });
    this.#listen(this.#signal);
    this.#watch(this.#signal);
    this.#signal.release();
    const recv = (await this.#signal.request('createTransport', { direction: 'recv' })) as TransportParams;
    this.#recv = this.#device.createRecvTransport(recv);
    this.#wireConnect(this.#recv);
    await this.#signal.request('ready', {
      rtpCapabilities: this.#device.rtpCapabilities as unknown as Json,
      sctpCapabilities: this.#device.sctpCapabilities as Json,
    });
  }

  get signal(): SignalClient {
    return this.#signal;
  }

  get joined(): ServerEvents['joined'] {
    return this.#joined;
  }

  get identity(): string {
    return String(this.#joined.participant.identity);
  }

  get sid(): string {
    return String(this.#joined.participant.sid);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Other participants currently visible, by identity (LiveKit ParticipantInfo JSON). */
  get participants(): Map<string, Json> {
    return new Map(this.#participants);
  }

  /** Who is speaking now, loudest first (updates come as `activeSpeakersChanged`). */
  get activeSpeakers(): ServerEvents['activeSpeakers']['speakers'] {
    return [...this.#speakers];
  }

  get remoteTracks(): RemoteTrack<Track>[] {
    return [...this.#remote.values()];
  }

  /** Ends the session on a `left` from the server; resumes it when the socket merely dropped. */
  #watch(s: SignalClient): void {
    let reason: string | undefined;
    s.on('left', (d) => (reason = d.reason));
    s.onClose((code) => {
      if (s !== this.#signal) return;
      // 4409: another connection resumed this session, so this one must not try to.
      if (reason || this.#leaving || !this.#reconnect || code === 4409 || this.#closed) {
        this.#end(reason ?? (code === 4409 ? 'superseded' : 'connection closed'));
        return;
      }
      this.#background(this.#resume(), 'resuming the session');
    });
  }

  async #resume(): Promise<void> {
    this.safeEmit('reconnecting');
    // not_found: the server no longer holds the session (left, removed, room deleted); any other
    // failure is a network error, tried again after the next delay.
    const lost = (err: unknown): boolean => err instanceof SignalError && err.code === 'not_found';
    let resumed: Awaited<ReturnType<Reconnector>> | undefined;
    try {
      resumed = await retry(async () => (this.#closed || this.#leaving ? undefined : await this.#reconnect!()), {
        attempts: RECONNECT_DELAYS_MS.length,
        backoff: RECONNECT_DELAYS_MS,
        waitFirst: true, // the socket just dropped: give the network a moment first
        retryable: (err) => !lost(err),
      });
    } catch (err) {
      return this.#end(lost(err) ? 'session lost' : 'reconnect failed');
    }
    if (!resumed) return; // closed or left while waiting
    this.#adopt(resumed.client, resumed.joined);
    this.safeEmit('reconnected');
  }

  /** Takes over a resumed session's socket and catches up on what changed while it was away. */
  #adopt(client: SignalClient, joined: ServerEvents['joined']): void {
    this.#signal = client;
    this.#joined = joined;
    this.#speakers = joined.activeSpeakers;
    const before = new Set(this.#participants.keys());
    this.#participants.clear();
    for (const p of joined.participants) this.#participants.set(String(p.identity), p);
    this.#listen(client);
    this.#watch(client);
    for (const [identity, p] of this.#participants) if (!before.has(identity)) this.safeEmit('participantConnected', p);
    for (const identity of before) if (!this.#participants.has(identity)) this.safeEmit('participantDisconnected', identity);
    // Consumers the server closed meanwhile go; ones it created meanwhile (never resumed) are consumed.
    const held = new Set(joined.consumers.map((c) => c.consumerId));
    for (const [sid, remote] of this.#remote) {
      if (held.has(remote.consumer.id)) continue;
      this.#remote.delete(sid);
      remote.consumer.close();
      this.safeEmit('trackUnsubscribed', sid);
    }
    const known = new Set([...this.#remote.values()].map((r) => r.consumer.id));
    for (const offer of joined.consumers) if (!known.has(offer.consumerId)) this.#background(this.#consume(offer), 'consuming a track');
    for (const offer of joined.dataConsumers) if (!this.#dataConsumerIds.has(offer.id)) this.#background(this.#consumeData(offer), 'consuming a data channel');
    client.release();
  }

  #end(reason: string): void {
    if (this.#closed) return;
    this.closeTransports();
    this.onEnded();
    this.safeEmit('disconnected', reason);
  }

  /** Subclass hook: the session is over (release local resources). */
  protected onEnded(): void {}

  #wireConnect(transport: ClientTransport): void {
    transport.on('connect', ({ dtlsParameters }, cb, eb) => {
      this.#signal.request('connectTransport', { transportId: transport.id, dtlsParameters: dtlsParameters as Json }).then(() => cb(), eb);
    });
  }

  async #sendTransport(): Promise<ClientTransport> {
    if (this.#send) return this.#send;
    const opts = (await this.#signal.request('createTransport', { direction: 'send' })) as TransportParams;
    const t = this.#device.createSendTransport(opts);
    this.#wireConnect(t);
    t.on('produce', ({ kind, rtpParameters, appData }, cb, eb) => {
      this.#signal
        .request('publishTrack', {
          transportId: t.id,
          kind,
          rtpParameters: rtpParameters as Json,
          source: appData.source as TrackSourceName,
          ...(appData.name ? { name: String(appData.name) } : {}),
          ...(typeof appData.width === 'number' ? { width: appData.width } : {}),
          ...(typeof appData.height === 'number' ? { height: appData.height } : {}),
        })
        .then((r) => cb({ id: (r as { trackSid: string }).trackSid }), eb);
    });
    t.on('producedata', ({ sctpStreamParameters, label, protocol }, cb, eb) => {
      this.#signal
        .request('publishData', { transportId: t.id, sctpStreamParameters: sctpStreamParameters as Json, label, protocol })
        .then((r) => cb(r as { id: string }), eb);
    });
    this.#send = t;
    return t;
  }

  #listen(s: SignalClient): void {
    s.on('participantJoined', (d) => {
      this.#participants.set(String(d.participant.identity), d.participant);
      this.safeEmit('participantConnected', d.participant);
    });
    s.on('participantUpdated', (d) => {
      this.#participants.set(String(d.participant.identity), d.participant);
      this.safeEmit('participantUpdated', d.participant);
    });
    s.on('participantLeft', (d) => {
      this.#participants.delete(d.identity);
      this.safeEmit('participantDisconnected', d.identity);
    });
    s.on('trackPublished', (d) => this.safeEmit('trackPublished', d.participantIdentity, d.track));
    s.on('trackUnpublished', (d) => this.safeEmit('trackUnpublished', d.participantIdentity, d.trackSid));
    s.on('trackMuted', (d) => this.safeEmit('trackMuted', d.participantIdentity, d.trackSid, d.muted));
    s.on('activeSpeakers', (d) => {
      this.#speakers = d.speakers;
      this.safeEmit('activeSpeakersChanged', d.speakers);
    });
    s.on('roomMetadata', (d) => this.safeEmit('roomMetadata', d.metadata));
    s.on('permissionsChanged', (d) => this.safeEmit('permissionsChanged', d.permission));
    s.on('newConsumer', (d) => this.#background(this.#consume(d), 'consuming a track'));
    s.on('consumerClosed', (d) => {
      const t = this.#remote.get(d.trackSid);
      if (!t || t.consumer.id !== d.consumerId) return;
      this.#remote.delete(d.trackSid);
      t.consumer.close();
      this.safeEmit('trackUnsubscribed', d.trackSid);
    });
    s.on('newDataConsumer', (d) => this.#background(this.#consumeData(d), 'consuming a data channel'));
  }

  /**
   * Runs a step started by an event. The steps report their expected failures themselves (as
   * 'disconnected'); anything else would be an unhandled rejection, so it goes to the console (the
   * SDK has no logger, and browsers show it there).
   */
  #background(step: Promise<void>, what: string): void {
    step.catch((err: unknown) => console.error(`roomgate: ${what} failed`, err));
  }

  async #consume(d: ServerEvents['newConsumer']): Promise<void> {
    if (!this.#recv) return;
    try {
      const consumer = await this.#recv.consume({ id: d.consumerId, producerId: d.producerId, kind: d.kind, rtpParameters: d.rtpParameters });
      await this.#signal.request('resumeConsumer', { consumerId: d.consumerId });
      const remote: RemoteTrack<Track> = {
        trackSid: d.trackSid,
        participantIdentity: d.participantIdentity,
        kind: d.kind,
        track: consumer.track as Track,
        consumer,
      };
      this.#remote.set(d.trackSid, remote);
      this.safeEmit('trackSubscribed', remote);
    } catch (err) {
      if (!this.#closed) this.safeEmit('disconnected', `consume failed: ${(err as Error).message}`);
    }
  }

  async #consumeData(d: ServerEvents['newDataConsumer']): Promise<void> {
    if (!this.#recv || this.#dataConsumerIds.has(d.id)) return;
    this.#dataConsumerIds.add(d.id);
    let dc: ClientDataConsumer;
    try {
      dc = await this.#recv.consumeData({
        id: d.id,
        dataProducerId: d.dataProducerId,
        sctpStreamParameters: d.sctpStreamParameters,
        label: d.label,
        protocol: d.protocol,
      });
    } catch (err) {
      if (!this.#closed) this.safeEmit('disconnected', `data channel failed: ${(err as Error).message}`);
      return;
    }
    if (dc.readyState === 'open') this.#dataReadyResolve();
    else dc.once('open', () => this.#dataReadyResolve());
    dc.on('message', (data) => {
      const bytes =
        typeof data === 'string'
          ? new TextEncoder().encode(data)
          : data instanceof ArrayBuffer
            ? new Uint8Array(data)
            : new Uint8Array(data as Uint8Array);
      const decoded = decodeData(bytes);
      if (decoded) this.safeEmit('dataReceived', { payload: decoded.payload, topic: decoded.header.topic, from: decoded.header.from });
    });
  }

  /** Publishes a media track (a browser MediaStreamTrack, or a werift track in Node). */
  protected async produce(track: unknown, opts: PublishOptions & { width?: number; height?: number }): Promise<ClientProducer> {
    const transport = await this.#sendTransport();
    const codec = opts.mimeType
      ? this.#device.rtpCapabilities.codecs?.find((c) => c.mimeType.toLowerCase() === opts.mimeType!.toLowerCase())
      : undefined;
    return transport.produce({
      track,
      ...(codec ? { codec } : {}),
      ...(opts.encodings ? { encodings: opts.encodings } : {}),
      appData: {
        source: opts.source,
        ...(opts.name ? { name: opts.name } : {}),
        ...(opts.width ? { width: opts.width } : {}),
        ...(opts.height ? { height: opts.height } : {}),
      },
    });
  }

  async unpublish(producer: ClientProducer): Promise<void> {
    producer.close();
    await this.#signal.request('unpublishTrack', { trackSid: producer.id });
  }

  /** Sends a data message to everyone in the room, or to the identities in `destinations`. */
  async publishData(
    payload: Uint8Array,
    opts: { reliable?: boolean; topic?: string; destinations?: string[]; /** LiveKit's name for `destinations`. */ destinationIdentities?: string[] } = {},
  ): Promise<void> {
    const destinations = opts.destinations ?? opts.destinationIdentities;
    const kind = opts.reliable === false ? 'lossy' : 'reliable';
    let dp = this.#dataProducers.get(kind);
    if (!dp) {
      const transport = await this.#sendTransport();
      dp = await transport.produceData(kind === 'reliable' ? { ordered: true, label: 'reliable' } : { ordered: false, maxRetransmits: 0, label: 'lossy' });
      this.#dataProducers.set(kind, dp);
      const opening = dp;
      await new Promise<void>((resolve) => (opening.readyState === 'open' ? resolve() : opening.once('open', () => resolve())));
    }
    const header = { ...(opts.topic ? { topic: opts.topic } : {}), ...(destinations ? { destinationIdentities: destinations } : {}) };
    const frame = encodeData(header, payload);
    // werift (Node) sends Buffers; browsers take any ArrayBufferView.
    dp.send(typeof Buffer === 'undefined' ? frame : Buffer.from(frame));
  }

  async setMuted(trackSid: string, muted: boolean): Promise<void> {
    await this.#signal.request('muteTrack', { trackSid, muted });
  }

  async updateMetadata(update: { metadata?: string; name?: string; attributes?: Record<string, string> }): Promise<void> {
    await this.#signal.request('updateMetadata', update);
  }

  protected closeTransports(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#send?.close();
    this.#recv?.close();
  }

  /** Leaves the room (the server is told) and closes everything. */
  async leave(): Promise<void> {
    this.#leaving = true;
    const s = this.#signal;
    if (!s.closed) {
      const gone = new Promise<void>((resolve) => s.onClose(() => resolve()));
      await s.request('leave', {}).catch(() => undefined);
      await Promise.race([gone, sleep(2000)]);
    }
    this.#end('CLIENT_INITIATED');
  }
}
