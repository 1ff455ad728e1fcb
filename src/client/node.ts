// A room participant in Node: the signaling protocol over `ws`, WebRTC through msc-node (mediasoup's
// client on the pure-TypeScript werift stack, which installs offline and runs on Node 20).
// For tests, bots and agents: publish RTP (e.g. from FFmpeg), receive tracks as RTP, send and
// receive data messages.
import dgram from 'node:dgram';
import {
  Device,
  MediaStreamTrack,
  RTCRtpCodecParameters,
  useAbsSendTime,
  useSdesMid,
  type types as msc,
} from 'msc-node';
import WebSocket from 'ws';
import { TypedEmitter } from '../emitter.ts';
import { launchFfmpeg, type FfmpegProcess } from '../media/ffmpeg.ts';
import { decodeData, encodeData, type Json, type ServerEvents, type TrackSourceName } from '../signaling/protocol.ts';
import { SignalClient, type WebSocketLike } from './SignalClient.ts';

export type VideoCodec = 'VP8' | 'H264';

const H264_FMTP = 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f';
const VIDEO_FEEDBACK = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }, { type: 'goog-remb' }];

function newDevice(): Device {
  return new Device({
    headerExtensions: { audio: [useSdesMid()], video: [useSdesMid(), useAbsSendTime()] },
    codecs: {
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2 })],
      video: [
        new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, rtcpFeedback: VIDEO_FEEDBACK }),
        new RTCRtpCodecParameters({ mimeType: 'video/H264', clockRate: 90000, rtcpFeedback: VIDEO_FEEDBACK, parameters: H264_FMTP }),
      ],
    },
  });
}

export interface RemoteTrack {
  trackSid: string;
  participantIdentity: string;
  kind: 'audio' | 'video';
  /** werift track: `track.onReceiveRtp.subscribe(rtp => …)` gives each RTP packet. */
  track: MediaStreamTrack;
  consumer: msc.Consumer;
}

export interface LocalTrack {
  trackSid: string;
  kind: 'audio' | 'video';
  /** Sends one RTP packet (SSRC and payload type are rewritten to the negotiated ones). */
  writeRtp(packet: Buffer): void;
  unpublish(): Promise<void>;
}

export interface DataMessage {
  payload: Uint8Array;
  topic?: string | undefined;
  /** Sender's identity; absent for messages sent with RoomService SendData. */
  from?: string | undefined;
}

export type NodeParticipantEvents = {
  participantJoined: [participant: Json];
  participantUpdated: [participant: Json];
  participantLeft: [identity: string];
  trackPublished: [participantIdentity: string, track: Json];
  trackUnpublished: [participantIdentity: string, trackSid: string];
  trackMuted: [participantIdentity: string, trackSid: string, muted: boolean];
  trackSubscribed: [track: RemoteTrack];
  trackUnsubscribed: [trackSid: string];
  dataReceived: [message: DataMessage];
  activeSpeakers: [speakers: ServerEvents['activeSpeakers']['speakers']];
  roomMetadata: [metadata: string];
  permissionsChanged: [permission: Json];
  disconnected: [reason: string];
};

export class NodeParticipant extends TypedEmitter<NodeParticipantEvents> {
  readonly signal: SignalClient;
  readonly joined: ServerEvents['joined'];
  readonly #device: Device;
  #send: msc.Transport | undefined;
  #recv: msc.Transport | undefined;
  readonly #dataProducers = new Map<'reliable' | 'lossy', msc.DataProducer>();
  readonly #remote = new Map<string, RemoteTrack>();
  readonly #ffmpeg = new Set<FfmpegProcess>();
  #closed = false;
  #dataReadyResolve!: () => void;
  /** Resolves once the server's data channel to this participant is open (messages before it are lost). */
  readonly dataReady = new Promise<void>((resolve) => (this.#dataReadyResolve = resolve));

  private constructor(signal: SignalClient, joined: ServerEvents['joined'], device: Device) {
    super();
    this.signal = signal;
    this.joined = joined;
    this.#device = device;
  }

  /** Joins the room named by the token at `url` (the gateway's http:// or ws:// base URL). */
  static async connect(url: string, token: string): Promise<NodeParticipant> {
    const { client, joined } = await SignalClient.connect(url, token, (u) => new WebSocket(u) as unknown as WebSocketLike);
    const device = newDevice();
    await device.load({ routerRtpCapabilities: joined.routerRtpCapabilities as unknown as msc.RtpCapabilities });
    const p = new NodeParticipant(client, joined, device);
    p.#listen();
    await p.#setup();
    return p;
  }

  get identity(): string {
    return String(this.joined.participant.identity);
  }

  get sid(): string {
    return String(this.joined.participant.sid);
  }

  get remoteTracks(): RemoteTrack[] {
    return [...this.#remote.values()];
  }

  #transportOptions(t: Record<string, unknown>): msc.TransportOptions {
    return {
      id: t.id as string,
      iceParameters: t.iceParameters as msc.IceParameters,
      iceCandidates: t.iceCandidates as msc.IceCandidate[],
      dtlsParameters: t.dtlsParameters as msc.DtlsParameters,
      sctpParameters: t.sctpParameters as msc.SctpParameters,
    };
  }

  #wireConnect(transport: msc.Transport): void {
    transport.on('connect', ({ dtlsParameters }: { dtlsParameters: Json }, cb: () => void, eb: (e: Error) => void) => {
      this.signal.request('connectTransport', { transportId: transport.id, dtlsParameters }).then(cb, eb);
    });
  }

  async #setup(): Promise<void> {
    const recv = (await this.signal.request('createTransport', { direction: 'recv' })) as Record<string, unknown>;
    this.#recv = this.#device.createRecvTransport(this.#transportOptions(recv));
    this.#wireConnect(this.#recv);
    await this.signal.request('ready', {
      rtpCapabilities: this.#device.rtpCapabilities as unknown as Json,
      sctpCapabilities: this.#device.sctpCapabilities as unknown as Json,
    });
  }

  async #sendTransport(): Promise<msc.Transport> {
    if (this.#send) return this.#send;
    const opts = (await this.signal.request('createTransport', { direction: 'send' })) as Record<string, unknown>;
    const t = this.#device.createSendTransport(this.#transportOptions(opts));
    this.#wireConnect(t);
    t.on('produce', (params: { kind: 'audio' | 'video'; rtpParameters: Json; appData: Json }, cb: (r: { id: string }) => void, eb: (e: Error) => void) => {
      this.signal
        .request('publishTrack', {
          transportId: t.id,
          kind: params.kind,
          rtpParameters: params.rtpParameters,
          source: params.appData.source as TrackSourceName,
          ...(params.appData.name ? { name: String(params.appData.name) } : {}),
        })
        .then((r) => cb({ id: (r as { trackSid: string }).trackSid }), eb);
    });
    t.on('producedata', (params: { sctpStreamParameters: Json; label: string; protocol: string }, cb: (r: { id: string }) => void, eb: (e: Error) => void) => {
      this.signal
        .request('publishData', { transportId: t.id, sctpStreamParameters: params.sctpStreamParameters, label: params.label, protocol: params.protocol })
        .then((r) => cb(r as { id: string }), eb);
    });
    this.#send = t;
    return t;
  }

  #listen(): void {
    const s = this.signal;
    s.on('participantJoined', (d) => this.safeEmit('participantJoined', d.participant));
    s.on('participantUpdated', (d) => this.safeEmit('participantUpdated', d.participant));
    s.on('participantLeft', (d) => this.safeEmit('participantLeft', d.identity));
    s.on('trackPublished', (d) => this.safeEmit('trackPublished', d.participantIdentity, d.track));
    s.on('trackUnpublished', (d) => this.safeEmit('trackUnpublished', d.participantIdentity, d.trackSid));
    s.on('trackMuted', (d) => this.safeEmit('trackMuted', d.participantIdentity, d.trackSid, d.muted));
    s.on('activeSpeakers', (d) => this.safeEmit('activeSpeakers', d.speakers));
    s.on('roomMetadata', (d) => this.safeEmit('roomMetadata', d.metadata));
    s.on('permissionsChanged', (d) => this.safeEmit('permissionsChanged', d.permission));
    s.on('newConsumer', (d) => void this.#consume(d));
    s.on('consumerClosed', (d) => {
      const t = this.#remote.get(d.trackSid);
      if (!t || t.consumer.id !== d.consumerId) return;
      this.#remote.delete(d.trackSid);
      t.consumer.close();
      this.safeEmit('trackUnsubscribed', d.trackSid);
    });
    s.on('newDataConsumer', (d) => void this.#consumeData(d));
    let reason = 'connection closed';
    s.on('left', (d) => (reason = d.reason));
    s.onClose(() => {
      void this.#teardown();
      this.safeEmit('disconnected', reason);
    });
  }

  async #consume(d: ServerEvents['newConsumer']): Promise<void> {
    if (!this.#recv) return;
    try {
      const consumer = await this.#recv.consume({
        id: d.consumerId,
        producerId: d.producerId,
        kind: d.kind,
        rtpParameters: d.rtpParameters as unknown as msc.RtpParameters,
      });
      await this.signal.request('resumeConsumer', { consumerId: d.consumerId });
      const remote: RemoteTrack = {
        trackSid: d.trackSid,
        participantIdentity: d.participantIdentity,
        kind: d.kind,
        track: consumer.track as unknown as MediaStreamTrack,
        consumer,
      };
      this.#remote.set(d.trackSid, remote);
      this.safeEmit('trackSubscribed', remote);
    } catch (err) {
      if (!this.#closed) this.safeEmit('disconnected', `consume failed: ${(err as Error).message}`);
    }
  }

  async #consumeData(d: ServerEvents['newDataConsumer']): Promise<void> {
    if (!this.#recv) return;
    let dc: msc.DataConsumer;
    try {
      dc = await this.#recv.consumeData({
        id: d.id,
        dataProducerId: d.dataProducerId,
        sctpStreamParameters: d.sctpStreamParameters as unknown as msc.SctpStreamParameters,
        label: d.label,
        protocol: d.protocol,
      });
    } catch (err) {
      if (!this.#closed) this.safeEmit('disconnected', `data channel failed: ${(err as Error).message}`);
      return;
    }
    if (dc.readyState === 'open') this.#dataReadyResolve();
    else dc.once('open', () => this.#dataReadyResolve());
    dc.on('message', (data: Buffer | string) => {
      const decoded = decodeData(typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array(data));
      if (decoded) this.safeEmit('dataReceived', { payload: decoded.payload, topic: decoded.header.topic, from: decoded.header.from });
    });
  }

  /** Publishes a track fed with RTP by the caller (writeRtp). */
  async publishTrack(opts: { kind: 'audio' | 'video'; source: TrackSourceName; codec?: VideoCodec; name?: string }): Promise<LocalTrack> {
    const transport = await this.#sendTransport();
    const track = new MediaStreamTrack({ kind: opts.kind });
    const mime = opts.kind === 'audio' ? 'audio/opus' : `video/${opts.codec ?? 'VP8'}`;
    const codec = this.#device.rtpCapabilities.codecs?.find((c) => c.mimeType.toLowerCase() === mime.toLowerCase());
    const producer = await transport.produce({
      track: track as never,
      ...(codec ? { codec } : {}),
      appData: { source: opts.source, ...(opts.name ? { name: opts.name } : {}) },
    });
    return {
      trackSid: producer.id,
      kind: opts.kind,
      writeRtp: (packet) => track.writeRtp(packet),
      unpublish: async () => {
        producer.close();
        await this.signal.request('unpublishTrack', { trackSid: producer.id });
      },
    };
  }

  /**
   * Publishes FFmpeg output: `input` are FFmpeg input arguments (e.g. `-re -f lavfi -i testsrc2`),
   * encoded to VP8/H.264 or Opus and sent as RTP to this participant, which forwards it.
   */
  async publishFromFfmpeg(opts: {
    kind: 'audio' | 'video';
    source: TrackSourceName;
    input: string[];
    codec?: VideoCodec;
    name?: string;
  }): Promise<LocalTrack & { ffmpeg: FfmpegProcess; stop(): Promise<void> }> {
    const local = await this.publishTrack(opts);
    const sock = dgram.createSocket('udp4');
    sock.on('message', (msg) => local.writeRtp(msg));
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    const port = sock.address().port;
    const encode =
      opts.kind === 'audio'
        ? ['-map', '0:a:0', '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '64k', '-payload_type', '111']
        : opts.codec === 'H264'
          ? ['-map', '0:v:0', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-bf', '0', '-g', '30', '-payload_type', '102']
          : ['-map', '0:v:0', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '800k', '-g', '30', '-payload_type', '96'];
    const ffmpeg = launchFfmpeg([...opts.input, ...encode, '-f', 'rtp', `rtp://127.0.0.1:${port}?pkt_size=1200`]);
    this.#ffmpeg.add(ffmpeg);
    void ffmpeg.exited.then(() => {
      this.#ffmpeg.delete(ffmpeg);
      sock.close();
    });
    return {
      ...local,
      ffmpeg,
      stop: async () => {
        await ffmpeg.stop();
      },
    };
  }

  /** Sends a data message to everyone in the room, or to `destinationIdentities`. */
  async publishData(payload: Uint8Array, opts: { reliable?: boolean; topic?: string; destinationIdentities?: string[] } = {}): Promise<void> {
    const kind = opts.reliable === false ? 'lossy' : 'reliable';
    let dp = this.#dataProducers.get(kind);
    if (!dp) {
      const transport = await this.#sendTransport();
      dp = await transport.produceData(kind === 'reliable' ? { ordered: true, label: 'reliable' } : { ordered: false, maxRetransmits: 0, label: 'lossy' });
      this.#dataProducers.set(kind, dp);
      await new Promise<void>((resolve) => (dp!.readyState === 'open' ? resolve() : dp!.once('open', () => resolve())));
    }
    const header = { ...(opts.topic ? { topic: opts.topic } : {}), ...(opts.destinationIdentities ? { destinationIdentities: opts.destinationIdentities } : {}) };
    dp.send(Buffer.from(encodeData(header, payload)));
  }

  async setMuted(trackSid: string, muted: boolean): Promise<void> {
    await this.signal.request('muteTrack', { trackSid, muted });
  }

  async updateMetadata(update: { metadata?: string; name?: string; attributes?: Record<string, string> }): Promise<void> {
    await this.signal.request('updateMetadata', update);
  }

  async #teardown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#ffmpeg].map((f) => f.stop()));
    this.#send?.close();
    this.#recv?.close();
  }

  /** Leaves the room (the server is told) and closes everything. */
  async leave(): Promise<void> {
    if (!this.signal.closed) {
      const gone = new Promise<void>((resolve) => this.signal.onClose(() => resolve()));
      await this.signal.request('leave', {}).catch(() => undefined);
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
    }
    await this.#teardown();
  }
}
