// Media of one ingress session into its room: FFmpeg reads the input (FLV on stdin for RTMP, a URL
// for URL ingress) and sends RTP to mediasoup PlainTransports that the ingress participant owns.
//
//   video: passthrough (-c:v copy, H.264 repacketised) or H.264 baseline without B-frames, one
//          FFmpeg encode per simulcast layer, all layers one Producer
//   audio: Opus (AAC and everything else transcoded; Opus copied)
//
// PlainTransports run in comedia mode: they lock onto the first sender's address, so all layers
// of a simulcast track go through one local UDP socket (UdpFunnel) and reach mediasoup from one port.
// The funnel also keeps the top layer's last keyframe interval (src/media/rtpRelay.ts): these
// streams cannot make a keyframe on request, and an egress starts from the cache at once.
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import type { TrackInfo } from '@livekit/protocol';
import type { types } from 'mediasoup';
import { TypedEmitter } from '../emitter.ts';
import { launchFfmpeg, type FfmpegProcess } from '../media/ffmpeg.ts';
import { parseRtp } from '../media/rtp.ts';
import { attachRelay, KeyframeCache } from '../media/rtpRelay.ts';
import type { IngressSession } from './IngressSessions.ts';
import type { VideoLayer } from './videoLayers.ts';

export interface IngestPlan {
  /** FFmpeg input options up to and including `-i …`. */
  input: string[];
  /** The input arrives through write() (stdin) instead of being read by FFmpeg itself. */
  stdin: boolean;
  /** 'copy' repacketises H.264 as it is; layers re-encode (lowest first). Absent: no video track. */
  video?: 'copy' | VideoLayer[];
  /** Opus input is copied, anything else transcoded. Absent: no audio track. */
  audio?: 'copy' | 'opus';
  /** A string of the input (a URL with credentials) that logs and errors must not show. */
  secret?: string;
  /** Size of the picture in the room (for TrackInfo), when known. */
  width?: number;
  height?: number;
}

export type IngestPipelineEvents = {
  /** FFmpeg ended by itself: end of input (code 0) or failure (stderr tail in `error`). */
  exit: [code: number | null, error: string | undefined];
};

const PT = { opus: 100, h264: 102 } as const;
const RTCP_FEEDBACK = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }];

/** RTP and RTCP from several local senders re-sent from one socket pair. */
class UdpFunnel {
  // Room for a few seconds of a stream while the event loop is busy (a keyframe is tens of kB).
  readonly rtp = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  readonly rtcp = dgram.createSocket('udp4');

  /** Packets of one SSRC (the top layer) also go to this cache. */
  #cache: { ssrc: number; cache: KeyframeCache } | undefined;

  static async open(target: { rtp: number; rtcp: number }, cache?: { ssrc: number; cache: KeyframeCache }): Promise<UdpFunnel> {
    const f = new UdpFunnel();
    f.#cache = cache;
    try {
      await Promise.all(
        [f.rtp, f.rtcp].map(
          (s) =>
            new Promise<void>((resolve, reject) => {
              s.once('error', reject); // e.g. out of file descriptors
              s.bind(0, '127.0.0.1', () => {
                s.off('error', reject);
                s.on('error', () => undefined); // a send to a closed port is not worth a crash
                resolve();
              });
            }),
        ),
      );
    } catch (err) {
      f.close();
      throw err;
    }
    // FFmpeg's packets are re-sent from this single port; mediasoup's own RTCP back to us is dropped.
    f.rtp.on('message', (m, from) => {
      if (from.port === target.rtp) return;
      f.rtp.send(m, target.rtp, '127.0.0.1');
      const c = f.#cache;
      if (c && parseRtp(m)?.ssrc === c.ssrc) c.cache.push(m);
    });
    f.rtcp.on('message', (m, from) => from.port !== target.rtcp && f.rtcp.send(m, target.rtcp, '127.0.0.1'));
    return f;
  }

  get ports(): { rtp: number; rtcp: number } {
    return { rtp: this.rtp.address().port, rtcp: this.rtcp.address().port };
  }

  close(): void {
    this.#cache?.cache.clear();
    for (const s of [this.rtp, this.rtcp]) {
      try {
        s.close();
      } catch {
        // never bound, or closed already
      }
    }
  }
}

const rtpUrl = (port: number, rtcpPort: number) => `rtp://127.0.0.1:${port}?rtcpport=${rtcpPort}&pkt_size=1200`;
const ssrc = () => randomInt(1, 2 ** 31);

export class IngestPipeline extends TypedEmitter<IngestPipelineEvents> {
  readonly #session: IngressSession;
  readonly #funnels: UdpFunnel[] = [];
  readonly #transports: types.PlainTransport[] = [];
  #ffmpeg: FfmpegProcess | undefined;
  #stopping = false;
  /** Track infos once published. */
  readonly tracks: TrackInfo[] = [];

  private constructor(session: IngressSession) {
    super();
    this.#session = session;
  }

  get pid(): number | undefined {
    return this.#ffmpeg?.pid;
  }

  /** Bytes queued for FFmpeg's stdin (a growing number means FFmpeg falls behind). */
  get pending(): number {
    return this.#ffmpeg?.pending ?? 0;
  }

  /**
   * Joins the room as the ingress participant, publishes the planned tracks on PlainTransports and
   * starts FFmpeg. The session turns PUBLISHING when RTP reaches the first transport.
   */
  static async start(session: IngressSession, plan: IngestPlan): Promise<IngestPipeline> {
    const pipeline = new IngestPipeline(session);
    try {
      await pipeline.#start(plan);
    } catch (err) {
      await pipeline.stop();
      throw err;
    }
    return pipeline;
  }

  async #start(plan: IngestPlan): Promise<void> {
    const session = this.#session;
    // Every await below may outlive the session (DeleteIngress, replacement, shutdown): check after each.
    const live = () => {
      if (session.ended) throw new Error('the ingress session ended while its pipeline was starting');
    };
    // A restarted pipeline (a track that came late, RtmpPublish) publishes as the same participant.
    const participant = session.participant ?? (await session.joinRoom());
    const outputs: string[] = [];
    const transports: types.PlainTransport[] = [];

    const transport = async () => {
      const t = await participant.openPlainSend('127.0.0.1');
      transports.push(t);
      this.#transports.push(t);
      live();
      return { t, rtp: t.tuple.localPort, rtcp: t.rtcpTuple!.localPort };
    };

    if (plan.video) {
      const { t, rtp, rtcp } = await transport();
      const layers = plan.video === 'copy' ? [undefined] : plan.video;
      const ssrcs = layers.map(() => ssrc());
      const cache = new KeyframeCache('video/H264');
      const funnel = await UdpFunnel.open({ rtp, rtcp }, { ssrc: ssrcs[ssrcs.length - 1]!, cache });
      this.#funnels.push(funnel);
      const target = funnel.ports;
      if (plan.video === 'copy') {
        outputs.push('-map', '0:v:0', '-c:v', 'copy', '-bsf:v', 'h264_mp4toannexb');
        outputs.push('-f', 'rtp', '-payload_type', String(PT.h264), '-ssrc', String(ssrcs[0]), rtpUrl(target.rtp, target.rtcp));
      } else {
        const split = plan.video.map((_, i) => `[s${i}]`).join('');
        const scaled = plan.video.map((l, i) => `[s${i}]scale=${l.width}:${l.height}:force_original_aspect_ratio=decrease,pad=${l.width}:${l.height}:-1:-1,fps=${l.fps},format=yuv420p[v${i}]`);
        outputs.push('-filter_complex', `[0:v:0]split=${plan.video.length}${split};${scaled.join(';')}`);
        plan.video.forEach((l, i) => {
          outputs.push(
            '-map', `[v${i}]`, '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline',
            '-bf', '0', '-g', String(l.fps * 2), '-keyint_min', String(l.fps), '-sc_threshold', '0',
            '-b:v', String(l.bitrate), '-maxrate', String(l.bitrate), '-bufsize', String(Math.round(l.bitrate / 2)),
            '-f', 'rtp', '-payload_type', String(PT.h264), '-ssrc', String(ssrcs[i]), rtpUrl(target.rtp, target.rtcp),
          );
        });
      }
      const top = plan.video === 'copy' ? undefined : plan.video[plan.video.length - 1];
      const { trackSid } = await participant.publishTrack({
        transportId: t.id,
        kind: 'video',
        source: 'camera',
        name: session.info.video?.name || 'video',
        width: top?.width ?? plan.width ?? 0,
        height: top?.height ?? plan.height ?? 0,
        rtpParameters: {
          codecs: [
            {
              mimeType: 'video/H264',
              payloadType: PT.h264,
              clockRate: 90000,
              // The router offers constrained baseline; a passthrough stream keeps its encoder's profile,
              // which every decoder we ship to (Chromium, FFmpeg) handles when there are no B-frames.
              parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
              rtcpFeedback: RTCP_FEEDBACK,
            },
          ],
          encodings: ssrcs.map((s) => ({ ssrc: s })),
        },
      });
      const published = participant.track(trackSid);
      if (published) attachRelay(published.producer, cache);
      this.#track(published?.info);
      live();
    }

    if (plan.audio) {
      const { t, rtp, rtcp } = await transport();
      const audioSsrc = ssrc();
      outputs.push('-map', '0:a:0');
      if (plan.audio === 'copy') outputs.push('-c:a', 'copy');
      // Complexity 3 of 10: a fraction of the default's CPU, with no audible loss at 96 kb/s.
      else outputs.push('-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '96k', '-frame_duration', '20', '-compression_level', '3');
      outputs.push('-f', 'rtp', '-payload_type', String(PT.opus), '-ssrc', String(audioSsrc), rtpUrl(rtp, rtcp));
      const { trackSid } = await participant.publishTrack({
        transportId: t.id,
        kind: 'audio',
        source: 'microphone',
        name: session.info.audio?.name || 'audio',
        rtpParameters: {
          codecs: [{ mimeType: 'audio/opus', payloadType: PT.opus, clockRate: 48000, channels: 2 }],
          encodings: [{ ssrc: audioSsrc }],
        },
      });
      this.#track(participant.track(trackSid)?.info);
      live();
    }

    // Media is in the room when the first RTP arrives (comedia reports the sender's address).
    let announced = false;
    for (const t of transports) {
      t.once('tuple', () => {
        if (announced) return;
        announced = true;
        session.publishing(this.tracks);
      });
    }

    live();
    const ffmpeg = launchFfmpeg([...plan.input, ...outputs], {
      log: session.log,
      stdin: plan.stdin ? 'media' : 'control',
      ...(plan.secret ? { secrets: [plan.secret] } : {}),
    });
    this.#ffmpeg = ffmpeg;
    ffmpeg.exited
      .then((code) => {
        if (this.#stopping) return;
        const tail = ffmpeg.stderrTail().split('\n').filter(Boolean).slice(-3).join(' | ');  // redacted by the launcher
        this.safeEmit('exit', code, code === 0 ? undefined : `ffmpeg exited with ${code ?? 'a signal'}: ${tail || 'no output'}`);
      })
      .catch((err: unknown) => session.log.error({ err }, 'handling the ingest FFmpeg exit failed'));
  }

  #track(info: TrackInfo | undefined): void {
    if (info) this.tracks.push(info);
  }

  write(chunk: Buffer): boolean {
    return this.#ffmpeg?.write(chunk) ?? false;
  }

  /**
   * Stops FFmpeg and the funnels. The transports close with the participant (IngressSession.end),
   * or here with `unpublish` (a pipeline replaced by one with more tracks): its tracks leave the room.
   */
  async stop(opts: { unpublish?: boolean } = {}): Promise<void> {
    this.#stopping = true;
    await this.#ffmpeg?.stop(1000);
    for (const f of this.#funnels.splice(0)) f.close();
    if (opts.unpublish) for (const t of this.#transports.splice(0)) t.close();
  }
}
