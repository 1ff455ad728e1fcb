// One egress as a worker runs it: a source strategy makes the media (sources/: a track copied into
// its file; an encoder for a participant or track composite; the compositor for a room composite),
// the outputs take it (runOutputs.ts), and this run keeps the record (EgressInfo through
// EgressRecords, webhooks, job progress) and finishes honestly:
//   STARTING → ACTIVE (first media out) → ENDING (stop / limit / source gone) → COMPLETE,
//   LIMIT_REACHED, ABORTED or FAILED (status.ts's endStatus), with file, stream and timing results.
// It stops when BullMQ's job signal aborts (StopEgress: cancelJob(id, 'stop'); the worker draining:
// 'drain') or when its duration limit is reached.
import fs from 'node:fs';
import os from 'node:os';
import { EgressStatus, FileInfo, StreamInfo_Status, type EgressInfo } from '@livekit/protocol';
import type { Logger } from '../../logger.ts';
import type { Storage, StoredFile } from '../../storage/Storage.ts';
import type { JobProgress, JobSpec } from '../contract.ts';
import type { EgressRecords } from '../EgressRecords.ts';
import { endStatus, type StatusEvent, type StopReason } from '../status.ts';
import { RunOutputs } from './runOutputs.ts';
import { CompositeSource } from './sources/compositeSource.ts';
import { EncodedSource } from './sources/encodedSource.ts';
import { TrackSource } from './sources/trackSource.ts';
import type { RunContext, SourceStrategy } from './sources/types.ts';
import type { TapClient } from './TapClient.ts';

export type { StopReason } from '../status.ts';

export interface RunDeps {
  spec: JobSpec;
  records: EgressRecords;
  taps: TapClient;
  storage: Storage;
  progress: (p: JobProgress) => Promise<void>;
  /** BullMQ's signal for this job; its reason says why ('drain': the worker stops gracefully; else a stop). */
  signal: AbortSignal;
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

const ms = (t: number): bigint => BigInt(t) * 1_000_000n;

/** The stop a job signal's reason asks for. */
export function stopReasonOf(reason: unknown): StopReason {
  return reason === 'drain' || reason === 'limit' || reason === 'shutdown' ? reason : 'stop';
}

export class EgressRun {
  readonly #d: RunDeps;
  readonly #log: Logger;
  /** The run's own stop: the job's signal or the duration limit. */
  readonly #stop = new AbortController();
  readonly #onJobAbort: () => void;
  readonly #outputs: RunOutputs;
  readonly #source: SourceStrategy;
  #stopReason: StopReason | undefined;
  #endReason = '';
  #error = '';
  #startedAt = 0;
  #persistTimer: NodeJS.Timeout | undefined;
  #limitTimer: NodeJS.Timeout | undefined;
  #progressTimer: NodeJS.Timeout | undefined;
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
    this.#outputs = new RunOutputs({ spec: deps.spec, storage: deps.storage, log: this.#log, onChange: () => this.#persistSoon() });
    const context = this.#context();
    const kind = deps.spec.source.kind;
    this.#source = kind === 'track' ? new TrackSource(context) : kind === 'room_composite' ? new CompositeSource(context) : new EncodedSource(context);
    this.#onJobAbort = () => this.#stopWith(stopReasonOf(deps.signal.reason));
    if (deps.signal.aborted) this.#onJobAbort();
    else deps.signal.addEventListener('abort', this.#onJobAbort, { once: true });
  }

  get egressId(): string {
    return this.#d.spec.egressId;
  }

  #stopWith(reason: StopReason): void {
    if (this.#stop.signal.aborted) return;
    this.#stopReason = reason;
    this.#log.info({ reason }, 'egress stop requested');
    this.#stop.abort();
  }

  /** UpdateStream, live: new destinations start at once (at a keyframe asked for now), removed ones finish. */
  updateStream(add: string[], remove: string[]): void {
    if (this.#outputs.updateStream(add, remove, this.#stop.signal.aborted)) {
      this.#source.outputAdded?.().catch((err: unknown) => this.#log.debug({ err: (err as Error).message }, 'keyframe for a new stream output failed'));
    }
    this.#persistSoon();
  }

  /** UpdateLayout (room composite): the picture follows the new layout within a second. */
  updateLayout(layout: string): void {
    this.#source.setLayout?.(layout);
  }

  async run(): Promise<void> {
    const { spec } = this.#d;
    fs.mkdirSync(this.#d.workDir, { recursive: true });
    try {
      if (spec.source.kind !== 'track') {
        this.#outputs.open();
        this.#reportPhase('attaching');
      }
      await this.#source.run();
    } catch (err) {
      this.#error ||= (err as Error).message;
      this.#log.error({ err: (err as Error).message }, 'egress failed');
    } finally {
      clearTimeout(this.#limitTimer);
      clearInterval(this.#progressTimer);
      this.#d.signal.removeEventListener('abort', this.#onJobAbort);
      await this.#finish();
      fs.rmSync(this.#d.workDir, { recursive: true, force: true });
    }
  }

  /** What a source strategy sees of its run. */
  #context(): RunContext {
    const d = this.#d;
    return {
      spec: d.spec,
      taps: d.taps,
      outputs: this.#outputs,
      rtpHost: d.rtpHost,
      workDir: d.workDir,
      log: this.#log,
      signal: this.#stop.signal,
      connected: (atMs) => {
        this.#connectedAt ||= atMs;
      },
      media: () => {
        this.#markActive().catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'could not mark the egress active'));
      },
      output: () => {
        this.#mediaOutAt = Date.now();
      },
      startedAt: () => this.#startedAt,
      ended: (reason) => {
        this.#endReason = reason;
      },
      attaching: () => this.#reportPhase('attaching'),
    };
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

  #persistSoon(): void {
    if (this.#persistTimer) return;
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = undefined;
      // #write logs its own failures and resolves.
      this.#write(undefined, (i) => this.#outputs.liveResults(i, this.#startedAt)).catch(() => undefined);
    }, 200);
  }

  /** The job's progress (what a stalled-job recovery reads back); a failed write only loses a hint. */
  #reportPhase(phase: JobProgress['phase'], extra: Partial<JobProgress> = {}): void {
    this.#d.progress({ phase, host: os.hostname(), ...this.#outputs.progressFields(), ...extra }).catch((err: unknown) => this.#log.debug({ err: (err as Error).message, phase }, 'job progress not written'));
  }

  async #markActive(): Promise<void> {
    if (this.#startedAt) return;
    this.#startedAt = this.#connectedAt || Date.now();
    this.#log.info('egress active');
    if (this.#d.maxDuration > 0) {
      this.#limitTimer = setTimeout(() => this.#stopWith('limit'), this.#d.maxDuration * 1000);
    }
    this.#reportPhase('active', { startedAt: this.#startedAt });
    await this.#write({ type: 'media' }, (i) => {
      i.startedAt = ms(this.#startedAt);
      for (const f of i.fileResults) {
        f.startedAt = i.startedAt;
        if (this.#outputs.fileName) f.filename = this.#outputs.fileName;
      }
      this.#outputs.liveResults(i, this.#startedAt);
    });
    const every = this.#d.progressInterval ?? 0;
    if (every > 0 && !this.#stop.signal.aborted) {
      this.#progressTimer = setInterval(() => {
        this.#reportProgress().catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'egress progress report failed'));
      }, every * 1000);
    }
  }

  /**
   * While ACTIVE, apps see the recording grow as LiveKit shows it: the file's duration and size so
   * far in EgressInfo, and an egress_updated webhook carrying them.
   */
  async #reportProgress(): Promise<void> {
    if (this.#stop.signal.aborted) return;
    const file = this.#outputs.localFile;
    const size = file && fs.existsSync(file) ? fs.statSync(file).size : 0;
    const durationNs = ms(Math.max(0, Date.now() - this.#startedAt));
    const info = await this.#write(undefined, (i) => {
      if (i.status !== EgressStatus.EGRESS_ACTIVE) return false;
      for (const f of i.fileResults) {
        f.duration = durationNs;
        f.size = BigInt(size);
      }
      this.#outputs.liveResults(i, this.#startedAt);
      return undefined;
    });
    if (info?.status === EgressStatus.EGRESS_ACTIVE && !this.#stop.signal.aborted) this.#d.records.notify('egress_updated', info);
  }

  async #finish(): Promise<void> {
    const { spec } = this.#d;
    clearTimeout(this.#persistTimer);
    await this.#write({ type: 'ending' }, (i) => this.#outputs.liveResults(i, this.#startedAt));
    this.#reportPhase('ending');

    // The segments and images end with their last uploads (or the backup folder).
    const ended = await this.#outputs.end();
    clearTimeout(this.#persistTimer); // the last uploads asked for one; the final write carries it all
    const endedAt = Date.now();

    let stored: StoredFile | undefined;
    const local = this.#outputs.localFile;
    if (local && fs.existsSync(local) && fs.statSync(local).size > 0 && spec.file) {
      this.#reportPhase('uploading');
      stored = await this.#d.storage.store(this.egressId, local, spec.file.filepath, spec.file.s3);
    }
    const recorded = this.#startedAt > 0;
    const status = endStatus({ failed: this.#error !== '', stopReason: this.#stopReason, recorded });
    await this.#write({ type: 'end', status }, (i) => {
      i.endedAt = ms(endedAt);
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
      this.#outputs.streamResults(i);
      for (const s of i.streamResults) if (s.status === StreamInfo_Status.ACTIVE) s.status = StreamInfo_Status.FINISHED;
      if (spec.file) {
        const f = i.fileResults[0] ?? new FileInfo({ filename: spec.file.filepath });
        if (recorded) {
          f.startedAt = ms(this.#startedAt);
          f.endedAt = ms(this.#mediaOutAt || endedAt);
          f.duration = f.endedAt - f.startedAt;
        }
        if (this.#outputs.fileName) f.filename = this.#outputs.fileName;
        if (stored) {
          f.filename = stored.name;
          f.size = BigInt(stored.size);
          f.location = stored.location;
          if (stored.backup) i.backupStorageUsed = true;
        }
        // Without media the file writer has nothing to probe: its complaint is not the story.
        if (ended.fileError && !this.#error && recorded) i.error = `file output: ${ended.fileError}`.slice(0, 500);
        i.fileResults = [f];
      }
      RunOutputs.finalResults(i, ended, recorded ? this.#startedAt : 0, recorded ? endedAt : 0);
      if (ended.errors.length > 0 && !i.error) i.error = ended.errors.join('; ').slice(0, 500);
    });
    this.#log.info({ status: EgressStatus[status], file: stored?.location, backup: stored?.backup }, 'egress ended');
  }
}
