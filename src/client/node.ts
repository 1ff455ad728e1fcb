// A room participant in Node: the shared Session over `ws`, WebRTC through msc-node (mediasoup's
// client on the pure-TypeScript werift stack, which installs offline and runs on Node 20).
// For tests, bots and agents: publish RTP (e.g. from FFmpeg), receive tracks as RTP, send and
// receive data messages.
import dgram from 'node:dgram';
import { Device, MediaStreamTrack, RTCRtpCodecParameters, RtpPacket, useAbsSendTime, useAudioLevelIndication, useSdesMid, type types } from 'msc-node';
import WebSocket from 'ws';
import { AUDIO_LEVEL_URI, audioLevelByte, PcmLevelMeter } from '../media/audioLevel.ts';
import { launchFfmpeg, type FfmpegProcess } from '../media/ffmpeg.ts';
import type { TrackSourceName } from '../signaling/protocol.ts';
import { Session, type ClientDevice, type RemoteTrack as SessionRemoteTrack, type SessionEvents } from './session.ts';
import { SignalClient, type WebSocketLike } from './SignalClient.ts';

export type { DataMessage } from './session.ts';
export type VideoCodec = 'VP8' | 'H264';

/** 20 ms at 48 kHz: the Opus packets publishFromFfmpeg sends. */
const OPUS_FRAME_SAMPLES = 960;

/** Remote tracks are werift tracks: `track.onReceiveRtp.subscribe(rtp => …)` gives each RTP packet. */
export type RemoteTrack = SessionRemoteTrack<MediaStreamTrack>;
export type NodeParticipantEvents = SessionEvents<MediaStreamTrack>;

const H264_FMTP = 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f';
const VIDEO_FEEDBACK = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }, { type: 'goog-remb' }];

function newDevice(): ClientDevice {
  const device = new Device({
    // ssrc-audio-level: the room's active-speaker detection reads only that.
    headerExtensions: { audio: [useSdesMid(), useAudioLevelIndication()], video: [useSdesMid(), useAbsSendTime()] },
    codecs: {
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2 })],
      video: [
        new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, rtcpFeedback: VIDEO_FEEDBACK }),
        new RTCRtpCodecParameters({ mimeType: 'video/H264', clockRate: 90000, rtcpFeedback: VIDEO_FEEDBACK, parameters: H264_FMTP }),
      ],
    },
  });
  // msc-node's classes have mediasoup-client's API; the session uses them through its interfaces.
  return device as unknown as ClientDevice;
}

export interface LocalTrack {
  trackSid: string;
  kind: 'audio' | 'video';
  /**
   * Sends one RTP packet (SSRC and payload type are rewritten to the negotiated ones). For audio,
   * `levelDbov` is the level of the packet's audio (dBov, 0 loudest): it goes with the packet as
   * ssrc-audio-level, so the room can tell who speaks.
   */
  writeRtp(packet: Buffer, levelDbov?: number): void;
  unpublish(): Promise<void>;
}

export class NodeParticipant extends Session<MediaStreamTrack> {
  readonly #ffmpeg = new Set<FfmpegProcess>();

  /** Joins the room named by the token at `url` (the gateway's http:// or ws:// base URL). */
  static async connect(url: string, token: string): Promise<NodeParticipant> {
    const factory = (u: string) => new WebSocket(u) as unknown as WebSocketLike;
    const { client, joined } = await SignalClient.connect(url, token, factory);
    const p = new NodeParticipant(client, joined, newDevice(), () => SignalClient.connect(url, token, factory, { reconnect: true }));
    await p.start();
    return p;
  }

  protected override onEnded(): void {
    // No logger in the SDK: an unexpected failure goes to the console rather than nowhere.
    this.#stopFfmpeg().catch((err: unknown) => console.error('roomgate: stopping FFmpeg failed', err));
  }

  /** Publishes a track fed with RTP by the caller (writeRtp). */
  async publishTrack(opts: { kind: 'audio' | 'video'; source: TrackSourceName; codec?: VideoCodec; name?: string }): Promise<LocalTrack> {
    const track = new MediaStreamTrack({ kind: opts.kind });
    const producer = await this.produce(track, {
      source: opts.source,
      mimeType: opts.kind === 'audio' ? 'audio/opus' : `video/${opts.codec ?? 'VP8'}`,
      ...(opts.name ? { name: opts.name } : {}),
    });
    const levelId = (producer as unknown as types.Producer).rtpParameters.headerExtensions?.find((e) => e.uri === AUDIO_LEVEL_URI)?.id;
    return {
      trackSid: producer.id,
      kind: opts.kind,
      writeRtp: (packet, levelDbov) => {
        if (levelDbov === undefined || levelId === undefined) return track.writeRtp(packet);
        const rtp = RtpPacket.deSerialize(packet);
        rtp.header.extensions.push({ id: levelId, payload: Buffer.from([audioLevelByte(levelDbov)]) });
        track.writeRtp(rtp);
      },
      unpublish: () => this.unpublish(producer),
    };
  }

  /**
   * Publishes FFmpeg output: `input` are FFmpeg input arguments (e.g. `-re -f lavfi -i testsrc2`),
   * encoded to VP8/H.264 or Opus and sent as RTP to this participant, which forwards it. Audio
   * carries its level: FFmpeg also writes the PCM it encodes, one level per 20 ms Opus packet.
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
    const meter = opts.kind === 'audio' ? new PcmLevelMeter(OPUS_FRAME_SAMPLES) : undefined;
    sock.on('message', (msg) => local.writeRtp(msg, meter?.next()));
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    const port = sock.address().port;
    const encode =
      opts.kind === 'audio'
        ? ['-map', '0:a:0', '-c:a', 'libopus', '-frame_duration', '20', '-ar', '48000', '-ac', '2', '-b:a', '64k', '-payload_type', '111']
        : opts.codec === 'H264'
          ? ['-map', '0:v:0', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-bf', '0', '-g', '30', '-payload_type', '102']
          : // One thread: paced by -re, libvpx's worker threads spin between frames (measured: 32 %
            // of a core for a 320×240 15 fps source with the default threads, 3.7 % with one).
            ['-map', '0:v:0', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-threads', '1', '-b:v', '800k', '-g', '30', '-payload_type', '96'];
    let ffmpeg: FfmpegProcess;
    try {
      const levels = meter ? ['-map', '0:a:0', '-ac', '1', '-ar', '48000', '-f', 's16le', 'pipe:1'] : [];
      ffmpeg = launchFfmpeg([...opts.input, ...encode, '-f', 'rtp', `rtp://127.0.0.1:${port}?pkt_size=1200`, ...levels], meter ? { stdout: 'pipe' } : {});
      if (meter) ffmpeg.stdout!.on('data', (pcm: Buffer) => meter.push(pcm));
    } catch (err) {
      sock.close();
      await local.unpublish().catch(() => undefined);
      throw err;
    }
    this.#ffmpeg.add(ffmpeg);
    ffmpeg.exited
      .then(() => {
        this.#ffmpeg.delete(ffmpeg);
        sock.close();
      })
      .catch((err: unknown) => console.error('roomgate: releasing a published track failed', err));
    return { ...local, ffmpeg, stop: () => ffmpeg.stop() };
  }

  async #stopFfmpeg(): Promise<void> {
    await Promise.all([...this.#ffmpeg].map((f) => f.stop()));
  }

  override async leave(): Promise<void> {
    await this.#stopFfmpeg();
    await super.leave();
  }
}
