// The outputs of an encoded egress. Each is its own FFmpeg reading the encoder's MPEG-TS on stdin,
// so one failing destination never stops another (HLS and images: hlsOutput.ts, imageOutput.ts): a stream destination that exits is restarted
// with backoff (1 s doubling to 30 s) and shows FAILED with its error and retry count meanwhile.
// When the worker dies, every sink sees end of input and finishes its file cleanly.
import { StreamInfo, StreamInfo_Status } from '@livekit/protocol';
import { launchFfmpeg, type FfmpegProcess } from '../../media/ffmpeg.ts';
import type { Logger } from '../../logger.ts';
import { redactStreamUrl } from '../urls.ts';
import { fileSinkArgs, streamSinkArgs } from './ffmpegArgs.ts';
import { TsKeyframeGate } from './tsGate.ts';
import { nowNs } from '../../time.ts';

/** A sink further behind than this is stuck (destination not reading): it is restarted. */
const MAX_PENDING_BYTES = 8 * 1024 * 1024;

export interface Sink {
  write(chunk: Buffer): void;
  /** Ends the input and waits for FFmpeg to finish its output. */
  end(): Promise<void>;
}

/**
 * An FFmpeg that writes local files from the TS (the recording, HLS segments, snapshots): it
 * reads from a keyframe on, drops input rather than grow without bound when the disk is far
 * behind, and says why it stopped if it stopped early.
 */
export class TsFfmpegSink implements Sink {
  readonly #ffmpeg: FfmpegProcess;
  readonly #gate = new TsKeyframeGate();
  #failed: string | undefined;

  constructor(args: string[], log: Logger) {
    this.#ffmpeg = launchFfmpeg(args, { stdin: 'media', log });
    this.#ffmpeg.exited
      .then((code) => {
        if (code !== 0) this.#failed = this.#ffmpeg.stderrTail().split('\n').slice(-2).join(' ') || `exit code ${String(code)}`;
      })
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not read how an output writer ended'));
  }

  /** Why the writer stopped early, if it did. */
  get error(): string | undefined {
    return this.#failed;
  }

  write(chunk: Buffer): void {
    if (this.#ffmpeg.pending > 64 * MAX_PENDING_BYTES) return; // disk far behind: drop rather than grow without bound
    const from = this.#gate.push(chunk);
    if (from.length > 0) this.#ffmpeg.write(from);
  }

  async end(): Promise<void> {
    await this.#ffmpeg.stop(20_000);
  }
}

/** What stores the pieces an output's FFmpeg writes into its staging folder (segments, images). */
export interface PiecePublisher<I, R> {
  /** Stores the pieces completed since the last call (in order). */
  sync(): void;
  /** Results so far (for EgressInfo while recording). */
  info(): I;
  /** Stores what is left once the writer has ended. */
  finish(): Promise<R>;
}

/** How often a staged output looks for completed pieces. */
const STAGED_POLL_MS = 500;

/** An output whose FFmpeg writes pieces into a folder, stored by its publisher as they complete. */
export class StagedOutput<I, R> implements Sink {
  readonly dir: string;
  readonly #ffmpeg: TsFfmpegSink;
  readonly #publisher: PiecePublisher<I, R>;
  readonly #timer: NodeJS.Timeout;
  #result: Promise<R> | undefined;

  constructor(dir: string, args: string[], publisher: PiecePublisher<I, R>, log: Logger) {
    this.dir = dir;
    this.#ffmpeg = new TsFfmpegSink(args, log);
    this.#publisher = publisher;
    this.#timer = setInterval(() => this.#publisher.sync(), STAGED_POLL_MS);
  }

  get error(): string | undefined {
    return this.#ffmpeg.error;
  }

  info(): I {
    return this.#publisher.info();
  }

  write(chunk: Buffer): void {
    this.#ffmpeg.write(chunk);
  }

  end(): Promise<void> {
    return this.finish().then(() => undefined);
  }

  /** Ends the writer (it completes its last piece) and stores what is left. */
  finish(): Promise<R> {
    this.#result ??= (async () => {
      await this.#ffmpeg.end();
      clearInterval(this.#timer);
      return this.#publisher.finish();
    })();
    return this.#result;
  }
}

export class FileSink extends TsFfmpegSink {
  readonly file: string;

  constructor(file: string, fileType: 'mp4' | 'ogg', log: Logger) {
    super(fileSinkArgs(file, fileType), log);
    this.file = file;
  }
}

export class StreamDestination implements Sink {
  readonly url: string;
  readonly info: StreamInfo;
  readonly #log: Logger;
  readonly #onChange: () => void;
  #ffmpeg: FfmpegProcess | undefined;
  /** Each launch reads from a keyframe on. */
  #gate = new TsKeyframeGate();
  #stopping = false;
  #backoffMs = 1000;
  #timer: NodeJS.Timeout | undefined;
  #healthy: NodeJS.Timeout | undefined;

  constructor(url: string, log: Logger, onChange: () => void) {
    this.url = url;
    this.info = new StreamInfo({ url: redactStreamUrl(url), status: StreamInfo_Status.ACTIVE, startedAt: nowNs() });
    this.#log = log.child({ destination: this.info.url });
    this.#onChange = onChange;
    this.#launch();
  }

  #launch(): void {
    if (this.#stopping) return;
    let ff: FfmpegProcess;
    try {
      ff = launchFfmpeg(streamSinkArgs(this.url), { stdin: 'media', log: this.#log });
      this.#gate = new TsKeyframeGate();
    } catch (err) {
      this.#failed((err as Error).message);
      return;
    }
    this.#ffmpeg = ff;
    const started = Date.now();
    // Up for a few seconds: the destination is healthy again.
    this.#healthy = setTimeout(() => {
      this.#backoffMs = 1000;
      if (this.info.status !== StreamInfo_Status.ACTIVE) {
        this.info.status = StreamInfo_Status.ACTIVE;
        this.info.error = '';
        this.#onChange();
      }
    }, 3000);
    ff.exited
      .then((code) => {
        clearTimeout(this.#healthy);
        if (this.#ffmpeg !== ff || this.#stopping) return;
        this.#ffmpeg = undefined;
        const reason = ff.stderrTail().split('\n').filter(Boolean).slice(-1)[0] ?? `ffmpeg exited with code ${String(code)}`;
        if (Date.now() - started > 10_000) this.#backoffMs = 1000;
        this.#failed(reason);
      })
      .catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'stream destination restart not scheduled'));
  }

  #failed(reason: string): void {
    this.info.status = StreamInfo_Status.FAILED;
    this.info.error = reason.replaceAll(this.url, this.info.url).slice(0, 300);
    this.info.retries++;
    this.info.lastRetryAt = nowNs() + BigInt(this.#backoffMs) * 1_000_000n;
    this.#log.warn({ error: this.info.error, retryInMs: this.#backoffMs }, 'stream destination failed; retrying');
    this.#onChange();
    this.#timer = setTimeout(() => this.#launch(), this.#backoffMs);
    this.#backoffMs = Math.min(this.#backoffMs * 2, 30_000);
  }

  write(chunk: Buffer): void {
    const ff = this.#ffmpeg;
    if (!ff) return;
    if (ff.pending > MAX_PENDING_BYTES) {
      this.#log.warn('stream destination is not keeping up; restarting it');
      // Its exit handler schedules the restart.
      ff.stop(0).catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'could not stop a stuck stream destination'));
      return;
    }
    const from = this.#gate.push(chunk);
    if (from.length > 0) ff.write(from);
  }

  async end(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#healthy);
    await this.#ffmpeg?.stop(5000);
    this.#ffmpeg = undefined;
    // Retries and the last error stay as the destination's history.
    this.info.status = StreamInfo_Status.FINISHED;
    this.info.endedAt = nowNs();
    if (this.info.startedAt > 0n) this.info.duration = this.info.endedAt - this.info.startedAt;
  }
}
