// One egress as a worker runs it: attach to the gateway's tracks, run FFmpeg, feed the outputs,
// report status (EgressInfo in Redis, webhooks, job progress), and finish honestly:
//   STARTING → ACTIVE (first media out) → ENDING (stop / limit / source gone) → COMPLETE,
//   LIMIT_REACHED or FAILED, with file, stream and timing results.
// Encoded egress (participant, track composite) and room composite: encoder FFmpeg → MPEG-TS on
// stdout → one sink FFmpeg per output (file, each RTMP URL, HLS segments, each image output).
// When the source's tracks change (republish, leave and rejoin, replaced producer) only the
// encoder restarts; its timestamps continue where the last one stopped.
// Track egress: one FFmpeg copying the track's codec into its file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EgressInfo, EgressStatus, FileInfo, StreamInfo_Status, type ImagesInfo, type SegmentsInfo } from '@livekit/protocol';
import { launchFfmpeg, type FfmpegProcess } from '../../media/ffmpeg.ts';
import type { Logger } from '../../logger.ts';
import type { Storage, StoredFile } from '../../storage/Storage.ts';
import type { EgressRecords } from '../EgressRecords.ts';
import type { StatusEvent } from '../status.ts';
import type { JobProgress, JobSpec, TapTrack } from '../contract.ts';
import { encoderArgs, encoderReplay, isPassthrough, trackToFile } from './ffmpegArgs.ts';
import { HlsOutput } from './hlsOutput.ts';
import { ImageOutput } from './imageOutput.ts';
import { FileSink, StreamDestination, type Sink } from './outputs.ts';
import { TapError, type TapClient } from './TapClient.ts';
import { TapInput } from './tapInput.ts';
import { CompositeRun } from '../composite/CompositeRun.ts';
import { sleep } from '../../time.ts';

/** `drain`: the worker is stopping gracefully and finishes the egress as StopEgress would. */
export type StopReason = 'stop' | 'limit' | 'shutdown' | 'drain';

export interface RunDeps {
  spec: JobSpec;
  records: EgressRecords;
  taps: TapClient;
  storage: Storage;
  progress: (p: JobProgress) => Promise<void>;
  /** Where the gateway sends RTP (this worker's address). */
  rtpHost: string;
  /** Folder for this run's SDP files. */
  workDir: string;
  /** Seconds of media before LIMIT_REACHED (0 = none). */
  maxDuration: number;
  /** Seconds between progress writes while ACTIVE (file duration/size + egress_updated); 0 = none. */
  progressInterval?: number;
  log: Logger;
}

/** Seconds without RTP after which FFmpeg ends by itself (muted long, unpublished, gateway gone). */
const ENCODER_RTP_TIMEOUT_S = 5;
const TRACK_RTP_TIMEOUT_S = 30;
/**
 * How the worker's RTP input waits for a picture (tapInput.ts). The encoder ends by itself after
 * ENCODER_RTP_TIMEOUT_S without packets, so it gets audio and video before then; a copy waits
 * longer for a keyframe rather than record undecodable pictures.
 */
const ENCODER_GATE = { holdAudioMs: 3000, gateTimeoutMs: 4000 };
const TRACK_GATE = { holdAudioMs: 0, gateTimeoutMs: (TRACK_RTP_TIMEOUT_S - 5) * 1000 };
/** An encoder that dies this many times in a row before any output fails the egress. */
const MAX_START_FAILURES = 3;

export class EgressRun {
  readonly #d: RunDeps;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  #stopReason: StopReason | undefined;
  #endReason = '';
  #error = '';
  #startedAt = 0;
  #fileSink: FileSink | undefined;
  readonly #streams = new Map<string, StreamDestination>();
  #segments: HlsOutput | undefined;
  #images: ImageOutput[] = [];
  #persistTimer: NodeJS.Timeout | undefined;
  #limitTimer: NodeJS.Timeout | undefined;
  #progressTimer: NodeJS.Timeout | undefined;
  #mediaOffsetS = 0;
  #localFile: string | undefined;
  /** The recording's name as it is stored (the asked one, numbered when that name was taken). */
  #fileName: string | undefined;
  /** When RTP first started flowing: the recording's real start (FFmpeg's first output comes after probing). */
  #connectedAt = 0;
  /**
   * When media last went to the outputs: the end of what the file holds. A source that ended (room
   * gone, publisher left) stopped the media before the egress finished tearing down.
   */
  #mediaOutAt = 0;

  constructor(deps: RunDeps) {
    this.#d = deps;
    this.#log = deps.log.child({ egress: deps.spec.egressId });
  }

  get egressId(): string {
    return this.#d.spec.egressId;
  }

  requestStop(reason: StopReason): void {
    if (this.#stop.signal.aborted) return;
    this.#stopReason = reason;
    this.#log.info({ reason }, 'egress stop requested');
    this.#stop.abort();
  }

  /** UpdateStream, live: new destinations start at once, removed ones finish. */
  updateStream(add: string[], remove: string[]): void {
    for (const url of remove) {
      const d = this.#streams.get(url);
      if (!d) continue;
      this.#streams.delete(url);
      void d.end().then(() => this.#persistSoon());
    }
    for (const url of add) {
      if (this.#streams.has(url) || this.#stop.signal.aborted) continue;
      this.#streams.set(url, new StreamDestination(url, this.#log, () => this.#persistSoon()));
      void this.#keyframeSoon();
    }
    this.#persistSoon();
  }

  /** UpdateLayout (room composite): the picture follows the new layout within a second. */
  updateLayout(layout: string): void {
    this.#composite?.setLayout(layout);
  }

  async run(): Promise<void> {
    const { spec } = this.#d;
    fs.mkdirSync(this.#d.workDir, { recursive: true });
    try {
      if (spec.source.kind === 'track') await this.#runTrack();
      else if (spec.source.kind === 'room_composite') await this.#runComposite();
      else await this.#runEncoded();
    } catch (err) {
      this.#error ||= (err as Error).message;
      this.#log.error({ err: (err as Error).message }, 'egress failed');
    } finally {
      clearTimeout(this.#limitTimer);
      clearInterval(this.#progressTimer);
      await this.#finish();
      fs.rmSync(this.#d.workDir, { recursive: true, force: true });
    }
  }

  // ---- status ---------------------------------------------------------------------------

  /** A status change (with its webhook), or with no event an amendment of what the record reports. */
  async #write(event: StatusEvent | undefined, mutate: (info: EgressInfo) => void | false): Promise<EgressInfo | undefined> {
    try {
      return event ? await this.#d.records.transition(this.egressId, event, mutate) : await this.#d.records.amend(this.egressId, mutate);
    } catch (err) {
      // Redis away for a moment: the recording goes on; the next write carries the state.
      this.#log.warn({ err: (err as Error).message }, 'could not write egress status');
      return undefined;
    }
  }

  #streamResults(info: EgressInfo): void {
    const live = new Map([...this.#streams.values()].map((d) => [d.info.url, d.info]));
    info.streamResults = info.streamResults.map((s) => {
      const mine = live.get(s.url);
      if (!mine) return s;
      live.delete(s.url);
      return mine.clone();
    });
    for (const extra of live.values()) info.streamResults.push(extra.clone());
  }

  #persistSoon(): void {
    if (this.#persistTimer) return;
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = undefined;
      void this.#write(undefined, (i) => this.#liveResults(i));
    }, 200);
  }

  /** Stream states and the counts of the segments and images stored so far. */
  #liveResults(info: EgressInfo): void {
    this.#streamResults(info);
    const started = BigInt(this.#startedAt) * 1_000_000n;
    if (this.#segments) info.segmentResults = [this.#withTimes(this.#segments.info(), started)];
    if (this.#images.length > 0) info.imageResults = this.#images.map((o) => this.#withTimes(o.info(), started));
    this.#syncLegacyResult(info);
  }

  #withTimes<T extends SegmentsInfo | ImagesInfo>(x: T, startedAt: bigint, endedAt = 0n): T {
    if (this.#startedAt) x.startedAt = startedAt;
    if (endedAt) x.endedAt = endedAt;
    return x;
  }

  /** The deprecated `result` oneof repeats the only output's results (set at start when it applies). */
  #syncLegacyResult(info: EgressInfo): void {
    if (info.result.case === 'segments' && info.segmentResults[0]) info.result.value = info.segmentResults[0].clone();
  }

  #progressBase(): Omit<JobProgress, 'phase'> {
    return {
      host: os.hostname(),
      ...(this.#localFile ? { localFile: this.#localFile } : {}),
      ...(this.#segments ? { segmentsDir: this.#segments.dir } : {}),
      ...(this.#images.length > 0 ? { imagesDirs: this.#images.map((o) => o.dir) } : {}),
    };
  }

  async #markActive(): Promise<void> {
    if (this.#startedAt) return;
    this.#startedAt = this.#connectedAt || Date.now();
    this.#log.info('egress active');
    if (this.#d.maxDuration > 0) {
      this.#limitTimer = setTimeout(() => this.requestStop('limit'), this.#d.maxDuration * 1000);
    }
    void this.#d.progress({ phase: 'active', ...this.#progressBase(), startedAt: this.#startedAt }).catch(() => undefined);
    await this.#write({ type: 'media' }, (i) => {
      i.startedAt = BigInt(this.#startedAt) * 1_000_000n;
      for (const f of i.fileResults) {
        f.startedAt = i.startedAt;
        if (this.#fileName) f.filename = this.#fileName;
      }
      this.#liveResults(i);
    });
    const every = this.#d.progressInterval ?? 0;
    if (every > 0 && !this.#stop.signal.aborted) {
      this.#progressTimer = setInterval(() => void this.#reportProgress().catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'egress progress report failed')), every * 1000);
    }
  }

  /**
   * While ACTIVE, apps see the recording grow as LiveKit shows it: the file's duration and size so
   * far in EgressInfo, and an egress_updated webhook carrying them.
   */
  async #reportProgress(): Promise<void> {
    if (this.#stop.signal.aborted) return;
    const size = this.#localFile && fs.existsSync(this.#localFile) ? fs.statSync(this.#localFile).size : 0;
    const durationNs = BigInt(Math.max(0, Date.now() - this.#startedAt)) * 1_000_000n;
    const info = await this.#write(undefined, (i) => {
      if (i.status !== EgressStatus.EGRESS_ACTIVE) return false;
      for (const f of i.fileResults) {
        f.duration = durationNs;
        f.size = BigInt(size);
      }
      this.#liveResults(i);
    });
    if (info?.status === EgressStatus.EGRESS_ACTIVE && !this.#stop.signal.aborted) this.#d.records.notify('egress_updated', info);
  }

  async #finish(): Promise<void> {
    const { spec } = this.#d;
    clearTimeout(this.#persistTimer);
    await this.#write({ type: 'ending' }, (i) => this.#liveResults(i));
    void this.#d.progress({ phase: 'ending', ...this.#progressBase() }).catch(() => undefined);

    // The segments and images end with their last uploads (or the backup folder).
    const [, , segments, images] = await Promise.all([
      Promise.all([...this.#streams.values()].map((d) => d.end())),
      this.#fileSink?.end(),
      this.#segments?.finish(),
      Promise.all(this.#images.map((o) => o.finish())),
    ]);
    clearTimeout(this.#persistTimer); // the last uploads asked for one; the final write carries it all
    const endedAt = Date.now();
    const fileError = this.#fileSink?.error;
    const outputErrors = [
      ...(this.#segments?.error ? [`segments output: ${this.#segments.error}`] : []),
      ...this.#images.flatMap((o, n) => (o.error ? [`image output ${n}: ${o.error}`] : [])),
    ];

    let stored: StoredFile | undefined;
    if (this.#localFile && fs.existsSync(this.#localFile) && fs.statSync(this.#localFile).size > 0 && spec.file) {
      void this.#d.progress({ phase: 'uploading', ...this.#progressBase() }).catch(() => undefined);
      stored = await this.#d.storage.store(this.egressId, this.#localFile, spec.file.filepath, spec.file.s3);
    }
    const recorded = this.#startedAt > 0;
    const status = this.#error
      ? EgressStatus.EGRESS_FAILED
      : this.#stopReason === 'limit'
        ? EgressStatus.EGRESS_LIMIT_REACHED
        : this.#stopReason === 'shutdown'
          ? EgressStatus.EGRESS_FAILED
          : !recorded
            ? EgressStatus.EGRESS_ABORTED
            : EgressStatus.EGRESS_COMPLETE;
    await this.#write({ type: 'end', status }, (i) => {
      i.endedAt = BigInt(endedAt) * 1_000_000n;
      if (!recorded) i.startedAt = 0n;
      if (status === EgressStatus.EGRESS_LIMIT_REACHED) {
        i.error = `maximum duration of ${this.#d.maxDuration} s reached`;
        i.errorCode = 413;
      } else if (status === EgressStatus.EGRESS_ABORTED) {
        // Stopped, or its source gone (a room deleted before anyone published), before any media:
        // LiveKit's "stopped before started": the file result has a name and no location.
        i.error = this.#stopReason === 'stop' || this.#stopReason === 'drain' ? 'stopped before any media was recorded' : 'the source ended before any media was recorded';
        i.errorCode = 412;
      } else if (this.#stopReason === 'shutdown' && !this.#error) {
        i.error = 'the egress worker shut down; what was recorded until then is kept';
      } else if (this.#error) {
        i.error = this.#error.slice(0, 500);
      }
      const why = { stop: 'StopEgress', limit: 'limit reached', shutdown: 'shutdown', drain: 'worker shutdown (drained)' } as const;
      i.details = `End reason: ${this.#endReason || (this.#stopReason ? why[this.#stopReason] : 'source ended')}`;
      this.#streamResults(i);
      for (const s of i.streamResults) if (s.status === StreamInfo_Status.ACTIVE) s.status = StreamInfo_Status.FINISHED;
      if (spec.file) {
        const f = i.fileResults[0] ?? new FileInfo({ filename: spec.file.filepath });
        if (recorded) {
          f.startedAt = BigInt(this.#startedAt) * 1_000_000n;
          f.endedAt = BigInt(this.#mediaOutAt || endedAt) * 1_000_000n;
          f.duration = f.endedAt - f.startedAt;
        }
        if (this.#fileName) f.filename = this.#fileName;
        if (stored) {
          f.filename = stored.name;
          f.size = BigInt(stored.size);
          f.location = stored.location;
          if (stored.backup) i.backupStorageUsed = true;
        }
        // Without media the file writer has nothing to probe: its complaint is not the story.
        if (fileError && !this.#error && recorded) i.error = `file output: ${fileError}`.slice(0, 500);
        i.fileResults = [f];
      }
      const started = recorded ? BigInt(this.#startedAt) * 1_000_000n : 0n;
      const ended = recorded ? BigInt(endedAt) * 1_000_000n : 0n;
      if (segments) i.segmentResults = [this.#withTimes(segments.info, started, ended)];
      if (images.length > 0) i.imageResults = images.map((r) => this.#withTimes(r.info, started, ended));
      if (segments?.backup || images.some((r) => r.backup)) i.backupStorageUsed = true;
      this.#syncLegacyResult(i);
      if (outputErrors.length > 0 && !i.error) i.error = outputErrors.join('; ').slice(0, 500);
    });
    this.#log.info({ status: EgressStatus[status], file: stored?.location, backup: stored?.backup }, 'egress ended');
  }

  // ---- media ----------------------------------------------------------------------------

  #tapSession: string | undefined;

  async #keyframeSoon(): Promise<void> {
    const id = this.#tapSession;
    if (id) await this.#d.taps.keyframe(id).catch(() => undefined);
  }

  /** Opens the gateway session, or waits (participant away) until it can; undefined when the source is gone or stop was asked. */
  async #attach(): Promise<{ sessionId: string; version: number; tracks: TapTrack[] } | undefined> {
    const { spec } = this.#d;
    let warned = '';
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      try {
        const r = await this.#d.taps.open(spec.egressId, spec.roomName, spec.source);
        failures = 0;
        if (r.state === 'ready') return r;
        if (r.state === 'ended') {
          this.#endReason = r.reason;
          return undefined;
        }
        if (warned !== r.reason) this.#log.info({ reason: r.reason }, 'egress waiting for its source');
        warned = r.reason;
      } catch (err) {
        // Gateway restarting: keep trying for a while, then give up honestly.
        if (++failures > 60) throw new Error(`cannot reach the gateway: ${(err as Error).message}`);
        if (failures === 1) this.#log.warn({ err: (err as Error).message }, 'gateway tap request failed; retrying');
      }
      await sleep(1000, this.#stop.signal);
    }
    return undefined;
  }

  /** The worker's receiving end (tapInput.ts) and FFmpeg's SDP for it. */
  async #plumb(tracks: TapTrack[], name: string, gate: { holdAudioMs: number; gateTimeoutMs: number }): Promise<{ sdpFile: string; input: TapInput }> {
    const input = await TapInput.open({ host: this.#d.rtpHost, tracks, ...gate, log: this.#log });
    const sdpFile = path.join(this.#d.workDir, `${name}.sdp`);
    fs.writeFileSync(sdpFile, input.sdp);
    return { sdpFile, input };
  }

  /** Watches the session until stop, FFmpeg exit, or a change of the source's tracks. */
  async #watch(sessionId: string, version: number, ffmpeg: FfmpegProcess, isTrack: boolean): Promise<'stop' | 'exit' | 'changed'> {
    let exited = false;
    void ffmpeg.exited.then(() => {
      exited = true;
    });
    let keyframes = 0;
    while (!this.#stop.signal.aborted && !exited) {
      await Promise.race([sleep(1000, this.#stop.signal), ffmpeg.exited]);
      if (this.#stop.signal.aborted || exited) break;
      try {
        const ka = await this.#d.taps.keepalive(sessionId);
        // A track egress follows one track: other changes of its owner do not concern it.
        if (isTrack && ka.gone) {
          this.#endReason = 'the track was unpublished';
          return 'exit';
        }
        if (ka.version !== version && !isTrack) return 'changed';
      } catch (err) {
        if (err instanceof TapError && err.status === 404) return 'changed'; // the gateway dropped the session (restart)
      }
      // Until media flows, ask again for a keyframe (the first one can arrive before FFmpeg listens).
      if (!this.#startedAt && keyframes++ < 5) await this.#d.taps.keyframe(sessionId).catch(() => undefined);
    }
    return this.#stop.signal.aborted ? 'stop' : 'exit';
  }

  /** The sinks of the encoded TS, every output of the job (room composite and encoded egress). */
  #openOutputs(): void {
    const { spec, storage } = this.#d;
    if (spec.file) {
      const { file, name } = storage.localFile(spec.egressId, spec.file.filepath, spec.file.s3);
      this.#localFile = file;
      this.#fileName = name;
      this.#fileSink = new FileSink(file, spec.file.fileType === 'ogg' ? 'ogg' : 'mp4', this.#log);
    }
    for (const url of spec.stream?.urls ?? []) this.#streams.set(url, new StreamDestination(url, this.#log, () => this.#persistSoon()));
    const onChange = () => this.#persistSoon();
    if (spec.segments) {
      const dir = storage.stagingDir(spec.egressId, 'segments');
      this.#segments = new HlsOutput({ egressId: spec.egressId, dir, spec: spec.segments, target: storage.target(spec.segments.s3), backup: storage, log: this.#log, onChange });
    }
    this.#images = (spec.images ?? []).map((im, index) => {
      const dir = storage.stagingDir(spec.egressId, `images-${index}`);
      return new ImageOutput({ egressId: spec.egressId, index, dir, spec: im, target: storage.target(im.s3), backup: storage, log: this.#log, onChange });
    });
    void this.#d.progress({ phase: 'attaching', ...this.#progressBase() }).catch(() => undefined);
  }

  #sinks(): Sink[] {
    return [...(this.#fileSink ? [this.#fileSink] : []), ...this.#streams.values(), ...(this.#segments ? [this.#segments] : []), ...this.#images];
  }

  async #runEncoded(): Promise<void> {
    const { spec } = this.#d;
    this.#openOutputs();

    let attempt = 0;
    let startFailures = 0;
    let firstEncoderAt = 0;
    while (!this.#stop.signal.aborted) {
      const session = await this.#attach();
      if (!session) break;
      this.#tapSession = session.sessionId;
      const video = session.tracks.find((t) => t.kind === 'video');
      const audio = session.tracks.find((t) => t.kind === 'audio');
      const ordered = [video, audio].filter((t): t is TapTrack => t !== undefined);
      let ffmpeg: FfmpegProcess | undefined;
      let input: TapInput | undefined;
      let produced = false;
      try {
        const plumbed = await this.#plumb(ordered, `encoder-${attempt++}`, ENCODER_GATE);
        input = plumbed.input;
        const { sdpFile } = plumbed;
        if (firstEncoderAt) this.#mediaOffsetS = (Date.now() - firstEncoderAt) / 1000;
        const plan = { hasVideo: !!video, hasAudio: !!audio, ...(video ? { videoMime: video.codec.mimeType } : {}), encoding: spec.encoding!, offsetS: this.#mediaOffsetS };
        ffmpeg = launchFfmpeg(encoderArgs(sdpFile, plan, ENCODER_RTP_TIMEOUT_S), { stdout: 'pipe', log: this.#log });
        firstEncoderAt ||= Date.now();
        this.#log.info({ tracks: ordered.map((t) => `${t.kind}:${t.codec.mimeType}`), passthrough: isPassthrough(plan), attempt }, 'encoder started');
        ffmpeg.stdout!.on('data', (chunk: Buffer) => {
          if (!produced) {
            produced = true;
            startFailures = 0;
            void this.#markActive();
          }
          this.#mediaOutAt = Date.now();
          for (const s of this.#sinks()) s.write(chunk);
        });
        // FFmpeg binds its UDP ports within a few ms of starting; the keyframe request follows connect.
        await sleep(120);
        await this.#d.taps.connect(session.sessionId, input.targets, encoderReplay(plan));
        this.#connectedAt ||= Date.now();
        const why = await this.#watch(session.sessionId, session.version, ffmpeg, false);
        if (why === 'changed') this.#log.info('source tracks changed; re-attaching');
      } finally {
        await ffmpeg?.stop(3000);
        input?.close();
        await this.#d.taps.close(session.sessionId).catch(() => undefined);
        this.#tapSession = undefined;
      }
      const code = await ffmpeg?.exited;
      if (!produced && !this.#stop.signal.aborted && code !== 0 && ++startFailures >= MAX_START_FAILURES) {
        throw new Error(`encoder failed: ${ffmpeg?.stderrTail().split('\n').slice(-3).join(' ') ?? 'did not start'}`);
      }
      if (this.#fileSink?.error && !this.#streams.size) throw new Error(`file output failed: ${this.#fileSink.error}`);
    }
  }

  #composite: CompositeRun | undefined;

  /** Room composite (src/egress/composite/): compositor runs feed the same sinks as encoded egress. */
  async #runComposite(): Promise<void> {
    const { spec } = this.#d;
    if (spec.source.kind !== 'room_composite') return;
    this.#openOutputs();
    const composite = new CompositeRun({
      egressId: spec.egressId,
      roomName: spec.roomName,
      roomId: spec.roomId,
      source: spec.source,
      encoding: spec.encoding!,
      taps: this.#d.taps,
      rtpHost: this.#d.rtpHost,
      workDir: this.#d.workDir,
      log: this.#log,
      signal: this.#stop.signal,
      write: (chunk) => {
        this.#mediaOutAt = Date.now();
        for (const s of this.#sinks()) s.write(chunk);
      },
      onMedia: (startMs) => {
        this.#connectedAt ||= Math.round(startMs);
        void this.#markActive();
      },
    });
    this.#composite = composite;
    await composite.run();
    if (composite.endReason) this.#endReason = composite.endReason;
  }

  async #runTrack(): Promise<void> {
    const { spec } = this.#d;
    const file = spec.file!;
    const local = this.#d.storage.localFile(spec.egressId, file.filepath, file.s3);
    this.#localFile = local.file;
    this.#fileName = local.name;
    const session = await this.#attach();
    if (!session) return;
    this.#tapSession = session.sessionId;
    let ffmpeg: FfmpegProcess | undefined;
    let input: TapInput | undefined;
    try {
      const plumbed = await this.#plumb(session.tracks, 'track', TRACK_GATE);
      input = plumbed.input;
      const { sdpFile } = plumbed;
      ffmpeg = launchFfmpeg(['-progress', 'pipe:1', '-stats_period', '0.25', ...trackToFile(sdpFile, local.file, TRACK_RTP_TIMEOUT_S)], { log: this.#log, stdout: 'pipe' });
      // ACTIVE once FFmpeg writes media; the recording started when the RTP did (connect).
      ffmpeg.stdout!.on('data', (chunk: Buffer) => {
        if (!this.#startedAt && /out_time_us=[1-9]/.test(chunk.toString())) void this.#markActive();
      });
      void this.#d.progress({ phase: 'attaching', ...this.#progressBase() }).catch(() => undefined);
      await sleep(120);
      // A copy keeps the cached pictures' own times: the file starts up to one keyframe interval early.
      await this.#d.taps.connect(session.sessionId, input.targets, 'preroll');
      this.#connectedAt = Date.now();
      const why = await this.#watch(session.sessionId, session.version, ffmpeg, true);
      if (why === 'exit') this.#endReason ||= 'the track stopped sending media';
    } finally {
      await ffmpeg?.stop(5000);
      input?.close();
      await this.#d.taps.close(session.sessionId).catch(() => undefined);
      this.#tapSession = undefined;
    }
    const code = await ffmpeg.exited;
    this.#log.debug({ code, stderr: ffmpeg.stderrTail().split('\n').slice(-3).join(' | ') }, 'track recorder ended');
    if (code !== 0 && !this.#startedAt) throw new Error(`track recorder failed: ${ffmpeg.stderrTail().split('\n').slice(-3).join(' ')}`);
  }
}
