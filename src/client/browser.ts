// roomgate browser SDK: one ES module (served by the gateway at /sdk/roomgate.js) on mediasoup-client.
//
//   import { connect } from '/sdk/roomgate.js';
//   const room = await connect(location.origin, token);
//   room.on('trackSubscribed', ({ track, participantIdentity }) => …);
//   await room.publishCamera(); await room.publishMicrophone();
//   await room.publishData(new TextEncoder().encode('hi'), { topic: 'chat' });
//   await room.disconnect();
import { Device } from 'mediasoup-client';
import type { Json } from '../signaling/protocol.ts';
import { Session, type ClientDevice, type ClientProducer, type PublishOptions, type SessionEvents } from './session.ts';
import { SignalClient, type WebSocketLike } from './SignalClient.ts';

export type { DataMessage, RemoteTrack } from './session.ts';
export type RoomEvents = SessionEvents<MediaStreamTrack>;
export { SignalError } from './SignalClient.ts';

export interface LocalTrack {
  trackSid: string;
  track: MediaStreamTrack;
  unpublish(): Promise<void>;
}

/** Simulcast layers for camera video (quarter, half, full resolution), as LiveKit's defaults. */
const CAMERA_LAYERS: RTCRtpEncodingParameters[] = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class Room extends Session<MediaStreamTrack> {
  readonly #local = new Set<MediaStreamTrack>();

  /** Joins the room named by `token` on the gateway at `url` (http(s):// or ws(s)://). */
  static async connect(url: string, token: string): Promise<Room> {
    const factory = (u: string) => new WebSocket(u) as unknown as WebSocketLike;
    const { client, joined } = await SignalClient.connect(url, token, factory);
    const device = new Device() as unknown as ClientDevice;
    const room = new Room(client, joined, device, () => SignalClient.connect(url, token, factory, { reconnect: true }));
    await room.start();
    return room;
  }

  get roomInfo(): Json {
    return this.joined.room;
  }

  async #publish(track: MediaStreamTrack, opts: PublishOptions & { width?: number; height?: number }): Promise<LocalTrack> {
    this.#local.add(track);
    let producer: ClientProducer;
    try {
      producer = await this.produce(track, opts);
    } catch (err) {
      track.stop();
      this.#local.delete(track);
      throw err;
    }
    return {
      trackSid: producer.id,
      track,
      unpublish: async () => {
        await this.unpublish(producer);
        track.stop();
        this.#local.delete(track);
      },
    };
  }

  /** Publishes the camera; with 3 simulcast layers when the camera gives at least 360 lines. */
  async publishCamera(opts: { width?: number; height?: number; simulcast?: boolean; deviceId?: string } = {}): Promise<LocalTrack> {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: opts.width ?? 1280, height: opts.height ?? 720, ...(opts.deviceId ? { deviceId: opts.deviceId } : {}) },
    });
    const track = stream.getVideoTracks()[0]!;
    const { width = 0, height = 0 } = track.getSettings();
    const simulcast = (opts.simulcast ?? true) && height >= 360;
    return this.#publish(track, { source: 'camera', width, height, ...(simulcast ? { encodings: CAMERA_LAYERS } : {}) });
  }

  /** `processing: false` turns off echo cancellation, noise suppression and gain control (music, tests). */
  async publishMicrophone(opts: { deviceId?: string; processing?: boolean } = {}): Promise<LocalTrack> {
    const processing = opts.processing ?? true;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        ...(opts.deviceId ? { deviceId: opts.deviceId } : {}),
        echoCancellation: processing,
        noiseSuppression: processing,
        autoGainControl: processing,
      },
    });
    return this.#publish(stream.getAudioTracks()[0]!, { source: 'microphone' });
  }

  async publishScreen(): Promise<LocalTrack> {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true });
    const track = stream.getVideoTracks()[0]!;
    const { width = 0, height = 0 } = track.getSettings();
    return this.#publish(track, { source: 'screen_share', width, height });
  }

  /** Chooses the simulcast layer this client receives for a track (0 = lowest). */
  async setPreferredLayer(trackSid: string, spatialLayer: number): Promise<void> {
    const remote = this.remoteTracks.find((t) => t.trackSid === trackSid);
    if (!remote) throw new Error(`not subscribed to ${trackSid}`);
    await this.signal.request('setPreferredLayers', { consumerId: remote.consumer.id, spatialLayer });
  }

  protected override onEnded(): void {
    for (const t of this.#local) t.stop();
    this.#local.clear();
  }

  async disconnect(): Promise<void> {
    await this.leave();
  }
}

export function connect(url: string, token: string): Promise<Room> {
  return Room.connect(url, token);
}
