// One RTMP publish, from the accepted handshake to the end: watches the packets node-media-server
// parses (probe: which tracks, codec, B-frames, picture size; then live rates and keyframe
// interval), chooses passthrough or transcode, and feeds FLV to the ingest pipeline's FFmpeg.
import { IngressState_Status } from '@livekit/protocol';
import type AVPacket from 'node-media-server/src/core/avpacket.js';
import Flv from 'node-media-server/src/protocol/flv.js';
import type BroadcastServer from 'node-media-server/src/server/broadcast_server.js';
import type BaseSession from 'node-media-server/src/session/base_session.js';
import type { Logger } from '../../logger.ts';
import { IngestPipeline, type IngestPlan } from '../IngestPipeline.ts';
import type { IngressSession } from '../IngressSessions.ts';
import { sameSizeLayer, videoLayers } from '../videoLayers.ts';
import {
  FLV,
  H264_CODEC_ID,
  InputMeter,
  PKT,
  audioCodec,
  body,
  hasReordering,
  metadataTag,
  parseAudioHeader,
  parseAvcSequenceHeader,
  videoCodecName,
} from './flv.ts';

/** How long to wait for the tracks the publisher announced before deciding with what came. */
const PROBE_MS = 3000;
/** A publisher that sends no media at all is dropped after this. */
const NO_MEDIA_MS = 10_000;
const STATS_MS = 2000;
/** A publisher whose connection stays open but sends nothing (Wi-Fi gone, no FIN) ends after this. */
const STALL_MS = 15_000;
/** FFmpeg more than this behind (bytes queued on its stdin) is stuck: the publish ends. */
const MAX_PENDING = 16 * 1024 * 1024;
/** The video since the last keyframe is kept up to this size (OBS's 8.3 s at 2500 kb/s: 2.6 MB). */
const MAX_GOP_BYTES = 8 * 1024 * 1024;
/** Pipeline restarts for a stream that changed (late tracks, B-frames), at most: a publisher flapping its tracks is not followed. */
const MAX_RESTARTS = 2;

interface Probe {
  metadata: boolean;
  expectVideo: boolean;
  expectAudio: boolean;
  videoCodec?: number;
  audioCodecId?: number;
  avc?: { width: number; height: number; profile: number; level: number };
  audio?: { sampleRate: number; channels: number };
  keyframe: boolean;
  bframes: boolean;
  firstMediaAt?: number;
}

export class RtmpPublish {
  readonly id: string;
  readonly ingressId: string;
  readonly #nms: BaseSession;
  readonly #broadcast: BroadcastServer;
  readonly #session: IngressSession;
  readonly #log: Logger;
  readonly #meter = new InputMeter();
  readonly #probe: Probe = { metadata: false, expectVideo: false, expectAudio: false, keyframe: false, bframes: false };
  #originalBroadcast: ((p: AVPacket) => void) | undefined;
  #pipeline: IngestPipeline | undefined;
  #plan: IngestPlan | undefined;
  /** Where live packets go once the pipeline runs; `keyed` once the first keyframe went. */
  #feed: { pipeline: IngestPipeline; plan: IngestPlan; keyed: boolean } | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stats: NodeJS.Timeout | undefined;
  #lastPacketAt = Date.now();
  #measuredFps = 0;
  #teardownDone: Promise<void> | undefined;
  /** FLV tags of the video since its last keyframe: a (re)started pipeline begins with them. */
  #gop: { tags: Buffer[]; bytes: number } | undefined;
  #restarts = 0;
  #restarting = false;

  constructor(opts: { nms: BaseSession; broadcast: BroadcastServer; session: IngressSession; log: Logger }) {
    this.#nms = opts.nms;
    this.id = opts.nms.id;
    this.#broadcast = opts.broadcast;
    this.#session = opts.session;
    this.ingressId = opts.session.ingressId;
    this.#log = opts.log.child({ rtmp: opts.nms.id, ip: opts.nms.ip });
    // Whatever ends the session (DeleteIngress, replacement, removal from the room) ends the publish.
    this.#session.once('end', () => {
      this.#teardown().catch((err: unknown) => this.#log.error({ err }, 'RTMP publish teardown failed'));
    });
  }

  get #ended(): boolean {
    return this.#teardownDone !== undefined;
  }

  get session(): IngressSession {
    return this.#session;
  }

  get pipelinePid(): number | undefined {
    return this.#pipeline?.pid;
  }

  /**
   * Accepted by the library: from now on this publish handles the packets. The library keeps doing
   * what only headers and metadata need (it stores them and reads onMetaData); its per-packet work
   * for players (RTMP and FLV re-muxing, GOP cache) is skipped, since ingress streams have none.
   */
  begin(): void {
    const broadcast = this.#broadcast;
    const original = broadcast.broadcastMessage;
    this.#originalBroadcast = original;
    broadcast.broadcastMessage = (p: AVPacket) => {
      try {
        // The library's AMF decoder throws on a malformed onMetaData: inside the try as well.
        if (p.flags === PKT.METADATA || p.flags === PKT.AUDIO_HEADER || p.flags === PKT.VIDEO_HEADER) original(p);
        if (broadcast.publisher !== this.#nms) return;
        this.#observe(p);
        this.#forward(p);
      } catch (err) {
        this.#fail(`could not read the stream: ${(err as Error).message}`);
      }
    };
    this.#timers.push(setTimeout(() => this.#decide(true), PROBE_MS));
    this.#timers.push(
      setTimeout(() => {
        if (!this.#plan) this.#fail(`no audio or video received within ${NO_MEDIA_MS / 1000} s`);
      }, NO_MEDIA_MS),
    );
  }

  /** Frames per second: onMetaData's figure until packets have been measured. */
  get #framerate(): number {
    return this.#measuredFps || this.#nms.videoFramerate || 0;
  }

  #observe(p: AVPacket): void {
    this.#lastPacketAt = Date.now();
    const probe = this.#probe;
    this.#meter.add(p);
    if (p.codec_type === FLV.VIDEO && (p.flags === PKT.KEYFRAME || p.flags === PKT.INTER)) this.#keep(p);
    if (p.flags === PKT.METADATA) {
      probe.metadata = true;
      probe.expectVideo = this.#nms.videoCodec !== undefined && this.#nms.videoCodec !== null && this.#nms.videoCodec !== 0;
      probe.expectAudio = this.#nms.audioCodec !== undefined && this.#nms.audioCodec !== null;
      // OBS and FFmpeg both send audiocodecid: an absent key means no audio track.
    } else if (p.codec_type === FLV.VIDEO) {
      probe.firstMediaAt ??= Date.now();
      probe.videoCodec = p.codec_id;
      if (p.flags === PKT.VIDEO_HEADER && p.codec_id === H264_CODEC_ID) probe.avc = parseAvcSequenceHeader(body(p));
      if (p.flags === PKT.KEYFRAME) probe.keyframe = true;
      // A passthrough plan that meets B-frames is replanned below (#replan): the plan is made at the
      // first keyframe, and some muxers (GStreamer's flvmux) give it no composition offset, so the
      // first reordered picture comes a few packets later.
      if (hasReordering(p)) probe.bframes = true;
    } else if (p.codec_type === FLV.AUDIO) {
      probe.firstMediaAt ??= Date.now();
      probe.audioCodecId = p.codec_id;
      if (p.flags === PKT.AUDIO_HEADER || !probe.audio) probe.audio = parseAudioHeader(body(p));
    }
    if (!this.#plan) this.#decide(false);
    else this.#replan();
  }

  #keep(p: AVPacket): void {
    if (p.flags === PKT.KEYFRAME) this.#gop = { tags: [], bytes: 0 };
    const gop = this.#gop;
    if (!gop) return;
    const tag = Flv.createMessage(p);
    gop.tags.push(tag);
    gop.bytes += tag.length;
    if (gop.bytes > MAX_GOP_BYTES) this.#gop = undefined;
  }

  /**
   * The stream outgrew its plan: a track started after the ingest began (GStreamer's video comes a
   * moment after its audio, x264's lookahead), or B-frames appeared in a passthrough video. The
   * pipeline restarts with a new plan, as the same participant, primed with the pictures since the
   * last keyframe.
   */
  #replan(): void {
    const plan = this.#plan;
    if (!plan || this.#restarting || !this.#pipeline || this.#ended) return;
    const probe = this.#probe;
    const videoReady = probe.videoCodec !== undefined && (probe.videoCodec !== H264_CODEC_ID || probe.keyframe);
    const audioReady = probe.audioCodecId !== undefined;
    const reasons = [
      ...(!plan.video && videoReady ? ['late video'] : []),
      ...(!plan.audio && audioReady ? ['late audio'] : []),
      ...(plan.video === 'copy' && probe.bframes ? ['B-frames'] : []),
    ];
    if (reasons.length === 0) return;
    if (this.#restarts >= MAX_RESTARTS) {
      // A publisher flapping its tracks is not followed; passthrough B-frames cannot be played.
      if (plan.video === 'copy' && probe.bframes) this.#fail('B-frames appeared in a passthrough stream; reconnect to re-encode them');
      return;
    }
    const next = this.#planFor(videoReady, audioReady);
    if (!next) return;
    this.#restarts++;
    this.#restarting = true;
    this.#log.info({ reasons }, 'the stream changed after the ingest began: restarting the pipeline');
    const old = this.#pipeline;
    this.#feed = undefined;
    this.#pipeline = undefined;
    this.#plan = next;
    this.#report(true);
    (async () => {
      try {
        await old.stop({ unpublish: true });
        if (!this.#ended) await this.#startPipeline();
      } finally {
        this.#restarting = false;
      }
    })().catch((err: unknown) => this.#fail(`could not restart the ingest pipeline: ${(err as Error).message}`));
  }

  /** Decides the plan once the announced tracks are there (or at the probe deadline). */
  #decide(deadline: boolean): void {
    if (this.#plan || this.#ended) return;
    const probe = this.#probe;
    const videoReady = probe.videoCodec !== undefined && (probe.videoCodec !== H264_CODEC_ID || probe.keyframe);
    const audioReady = probe.audioCodecId !== undefined;
    const complete = probe.metadata
      ? (!probe.expectVideo || videoReady) && (!probe.expectAudio || audioReady)
      : videoReady && audioReady;
    const quietFor = probe.firstMediaAt ? Date.now() - probe.firstMediaAt : 0;
    if (!complete && !deadline && !(quietFor > 1500 && !probe.metadata)) return;
    if (!videoReady && !audioReady) {
      if (deadline) this.#timers.push(setTimeout(() => this.#decide(true), 500)); // keep waiting until NO_MEDIA_MS
      return;
    }
    const plan = this.#planFor(videoReady, audioReady);
    if (!plan) return;
    this.#plan = plan;
    // What the probe saw goes into the state now, so that PUBLISHING and ingress_started carry it;
    // the stats refine it every few seconds.
    this.#report(true);
    // #startPipeline turns its own failures into the ingress error; this catches anything else.
    this.#startPipeline().catch((err: unknown) => this.#fail(`could not start the ingest pipeline: ${(err as Error).message}`));
  }

  #planFor(video: boolean, audio: boolean): IngestPlan | undefined {
    const probe = this.#probe;
    const info = this.#session.info;
    const transcode = info.enableTranscoding === true;
    const plan: IngestPlan = {
      // The stream headers come first and the onMetaData we write carries the picture size (read with
      // flv_metadata), so FFmpeg needs no probing: it starts on the first packets. Those it probed
      // are kept (no -fflags nobuffer, which drops them): the first is the keyframe, and without it
      // the video would wait for the next one (8.3 s with OBS's defaults).
      input: [
        '-flags', 'low_delay', '-probesize', '4096', '-analyzeduration', '1',
        '-f', 'flv', '-flv_metadata', '1', '-i', 'pipe:0',
      ],
      stdin: true,
      ...(probe.avc ? { width: probe.avc.width, height: probe.avc.height } : {}),
    };
    if (video) {
      const codec = probe.videoCodec!;
      if (transcode) {
        plan.video = videoLayers(info.video, probe.avc?.height);
        this.#session.videoHandling = 'transcoded';
      } else if (codec !== H264_CODEC_ID) {
        this.#fail(`video codec ${videoCodecName(codec)} cannot be passed through: send H.264 (or create the ingress with enableTranscoding)`);
        return undefined;
      } else if (probe.bframes) {
        this.#log.warn('the stream has B-frames, which WebRTC cannot play: re-encoding the video without them (turn B-frames off in the encoder to avoid this)');
        plan.video = [sameSizeLayer(probe.avc?.width, probe.avc?.height, this.#framerate)];
        this.#session.videoHandling = 'bframes_reencoded';
      } else {
        plan.video = 'copy';
        this.#session.videoHandling = 'passthrough';
      }
    }
    if (audio) plan.audio = 'opus';
    return plan;
  }

  async #startPipeline(): Promise<void> {
    const plan = this.#plan!;
    let pipeline: IngestPipeline;
    try {
      pipeline = await IngestPipeline.start(this.#session, plan);
    } catch (err) {
      this.#fail(`could not start the ingest pipeline: ${(err as Error).message}`);
      return;
    }
    if (this.#ended) {
      await pipeline.stop();
      return;
    }
    this.#pipeline = pipeline;
    pipeline.once('exit', (_code, error) => this.#fail(error ?? 'the ingest pipeline stopped'));
    this.#attachFeed(pipeline, plan);
    this.#stats ??= setInterval(() => this.#report(), STATS_MS);
    this.#log.info(
      { video: plan.video === 'copy' ? 'passthrough' : plan.video ? `transcode ${plan.video.length} layer(s)` : 'none', audio: plan.audio ?? 'none', pid: pipeline.pid },
      'RTMP ingest pipeline started',
    );
  }

  /** FFmpeg gets the FLV header, the stream headers, then live tags from the next keyframe on. */
  #attachFeed(pipeline: IngestPipeline, plan: IngestPlan): void {
    const b = this.#broadcast;
    pipeline.write(Flv.createHeader(plan.audio !== undefined, plan.video !== undefined));
    // Stream headers before the metadata: FFmpeg's FLV demuxer applies onMetaData's width and height
    // only to streams that exist, and its RTP muxer refuses a video stream without dimensions.
    for (const h of [plan.audio ? b.flvAudioHeader : null, plan.video ? b.flvVideoHeader : null]) if (h) pipeline.write(h);
    if (plan.video && this.#probe.avc) pipeline.write(metadataTag({ width: this.#probe.avc.width, height: this.#probe.avc.height }));
    // Starting mid-GOP would only send undecodable frames, and the next keyframe may be a whole
    // interval away (OBS: 8.3 s). So the pictures since the last keyframe go first: few when the
    // pipeline starts at once (the decision comes right after the first keyframe, a restart right
    // after the late track's), more when the machine is slow to start it; they reach the room as
    // one burst before the live pictures, once, at the start of the stream.
    const gop = this.#gop;
    const prime = plan.video !== undefined && gop !== undefined;
    if (prime) for (const tag of gop.tags) pipeline.write(tag);
    this.#feed = { pipeline, plan, keyed: plan.video === undefined || prime };
  }

  #forward(p: AVPacket): void {
    const feed = this.#feed;
    if (!feed) return;
    if (p.codec_type === FLV.VIDEO) {
      if (!feed.plan.video) return;
      // A new sequence header (the encoder changed its settings or the picture size) goes through:
      // FFmpeg carries it as new extradata and repeats the new SPS/PPS on keyframes.
      if (p.flags === PKT.VIDEO_HEADER && feed.keyed) return void feed.pipeline.write(Flv.createMessage(p));
      if (p.flags !== PKT.KEYFRAME && p.flags !== PKT.INTER) return;
      if (!feed.keyed) {
        if (p.flags !== PKT.KEYFRAME) return;
        feed.keyed = true;
      }
    } else if (p.codec_type === FLV.AUDIO) {
      if (!feed.plan.audio || (p.flags !== PKT.AUDIO && p.flags !== PKT.AUDIO_HEADER)) return;
    } else {
      return;
    }
    if (feed.pipeline.pending > MAX_PENDING) {
      this.#fail('the ingest pipeline cannot keep up with the stream');
      return;
    }
    feed.pipeline.write(Flv.createMessage(p));
  }

  /** `probed`: at the decision, before any stats window (rates since the first packet). */
  #report(probed = false): void {
    if (!probed && Date.now() - this.#lastPacketAt > STALL_MS) {
      this.#session.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, `no media for ${STALL_MS / 1000} s`);
      return;
    }
    const rates = this.#meter.take();
    if (rates.framerate > 0) this.#measuredFps = rates.framerate;
    if (probed && rates.framerate <= 0) rates.framerate = this.#framerate;
    const probe = this.#probe;
    const plan = this.#plan;
    this.#session.updateInput({
      ...(plan?.video
        ? {
            video: {
              mimeType: probe.videoCodec === H264_CODEC_ID ? 'video/h264' : `video/${videoCodecName(probe.videoCodec ?? 0)}`,
              width: probe.avc?.width ?? 0,
              height: probe.avc?.height ?? 0,
              framerate: rates.framerate,
              averageBitrate: rates.videoBitrate,
            },
          }
        : {}),
      ...(plan?.audio
        ? {
            audio: {
              mimeType: audioCodec(probe.audioCodecId ?? -1).mime,
              channels: probe.audio?.channels ?? 0,
              sampleRate: probe.audio?.sampleRate ?? 0,
              averageBitrate: rates.audioBitrate,
            },
          }
        : {}),
      keyframeIntervalMs: this.#meter.gopMs,
    });
  }

  #fail(error: string): void {
    if (this.#ended) return;
    this.#session.end(IngressState_Status.ENDPOINT_ERROR, error);
  }

  /** The publisher's connection closed. */
  disconnected(): void {
    this.#session.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, 'publisher disconnected');
  }

  /** Replaced by a newer connection or server shutdown: drop the socket now; resolves when FFmpeg is gone. */
  evict(): Promise<void> {
    this.#nms.socket?.destroy();
    return this.#teardown();
  }


  /** Once, whoever asks first; later callers wait for the same end (FFmpeg stopped). */
  #teardown(): Promise<void> {
    this.#teardownDone ??= this.#doTeardown();
    return this.#teardownDone;
  }

  async #doTeardown(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    clearInterval(this.#stats);
    this.#feed = undefined;
    if (this.#originalBroadcast && this.#broadcast.publisher === this.#nms) this.#broadcast.broadcastMessage = this.#originalBroadcast;
    // Ended from our side (error, DeleteIngress, removed from the room, stalled): hang up on the publisher.
    this.#nms.socket?.destroy();
    this.#session.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, 'publish ended');
    await this.#pipeline?.stop();
  }
}
