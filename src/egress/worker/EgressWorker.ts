// An egress worker: a BullMQ consumer that takes jobs while it has CPU budget (LiveKit's cost
// model: each job reserves its type's cost; capacity = max_cpu cores; an idle worker always takes
// one job, so a job costlier than the whole budget still runs alone), runs each as an EgressRun,
// obeys StopEgress / UpdateStream sent over Redis pub/sub by whichever gateway got the call, and
// finishes honestly a job whose previous worker died (BullMQ stalled-job detection).
import os from 'node:os';
import path from 'node:path';
import { EgressStatus } from '@livekit/protocol';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../../config.ts';
import type { Logger } from '../../logger.ts';
import { createMetrics } from '../../metrics.ts';
import { connectRedis } from '../../store/redis.ts';
import { Storage } from '../../storage/Storage.ts';
import { WebhookNotifier } from '../../webhooks/WebhookNotifier.ts';
import { EgressRecords } from '../EgressRecords.ts';
import { EgressStore } from '../EgressStore.ts';
import { isFinal } from '../status.ts';
import { BULL_PREFIX, CONTROL_CHANNEL, ControlSchema, EGRESS_QUEUE, JobSpecSchema, type EgressKind, type JobProgress, type JobSpec } from '../contract.ts';
import { jobDataKey, seal, unseal, unsealSpec } from '../jobSecrets.ts';
import { EgressRun, type StopReason } from './EgressRun.ts';
import { recoverStalledJob } from './recovery.ts';
import { TapClient } from './TapClient.ts';
import { roomNodeUrl } from '../../cluster/roomNode.ts';
import { nowNs, sleep } from '../../time.ts';

export interface EgressWorkerOptions {
  redisUrl: string;
  gatewayUrl: string;
  egress: Config['egress'];
  webhook: { urls: string[]; apiKey: string; apiSecret: string };
  log: Logger;
  /** Most jobs fetched at once; the CPU budget is what really limits. */
  concurrency?: number;
}

export class EgressWorker {
  readonly #opts: EgressWorkerOptions;
  readonly #log: Logger;
  readonly #runs = new Map<string, EgressRun>();
  readonly #store: EgressStore;
  /** Every status write and its webhook (the same rules as the gateway's). */
  readonly #records: EgressRecords;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #storage: Storage;
  readonly #webhooks: WebhookNotifier;
  readonly #taps: TapClient;
  /** Opens the job data's sealed secrets (src/egress/jobSecrets.ts). */
  readonly #jobKey: Buffer;
  #worker!: Worker<JobSpec>;
  #bullConnection!: Redis;
  #used = 0;
  #closing: Promise<void> | undefined;

  private constructor(opts: EgressWorkerOptions, redis: Redis) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#redis = redis;
    this.#store = new EgressStore(redis);
    this.#subscriber = new Redis(opts.redisUrl, { maxRetriesPerRequest: null, connectionName: 'roomgate-egress-control' });
    this.#subscriber.on('error', () => {});
    this.#webhooks = new WebhookNotifier({ ...opts.webhook, log: opts.log.child({ module: 'webhooks' }), metrics: createMetrics({ activeRooms: () => 0 }) });
    this.#records = new EgressRecords({ store: this.#store, webhooks: this.#webhooks });
    // With several gateway nodes, each room's taps come from the node hosting it.
    this.#taps = new TapClient(opts.gatewayUrl, opts.egress.worker_secret, roomNodeUrl(redis));
    this.#jobKey = jobDataKey(opts.egress.worker_secret);
    this.#storage = new Storage({
      outputDir: opts.egress.output_dir,
      backupDir: opts.egress.backup_dir,
      pending: this.#store,
      secrets: { seal: (v) => seal(v, this.#jobKey), unseal: (v) => unseal(v, this.#jobKey) },
      log: opts.log,
      onUploaded: async (egressId, location, output, locations) => {
        await this.#records.amend(
          egressId,
          (i) => {
            if (output === 'file') for (const f of i.fileResults) f.location = location;
            for (const s of output === 'segments' ? i.segmentResults : []) {
              s.playlistLocation = locations.get(s.playlistName) ?? s.playlistLocation;
              if (s.livePlaylistName) s.livePlaylistLocation = locations.get(s.livePlaylistName) ?? s.livePlaylistLocation;
              if (i.result.case === 'segments') i.result.value = s.clone();
            }
            const what = output === 'file' ? 'uploaded' : `${output} uploaded`;
            i.details = `${i.details}${i.details ? '; ' : ''}${what} from the backup folder after a retry`;
          },
          { final: true },
        );
      },
    });
  }

  static async start(opts: EgressWorkerOptions): Promise<EgressWorker> {
    const redis = await connectRedis(opts.redisUrl, 'roomgate-egress-worker');
    const w = new EgressWorker(opts, redis);
    await w.#subscriber.subscribe(CONTROL_CHANNEL);
    w.#subscriber.on('message', (_channel, message: string) => w.#onControl(message));
    const stallMs = opts.egress.stall_timeout * 1000;
    // The processor declares three parameters: BullMQ passes the AbortSignal only then.
    const processor = (job: Job<JobSpec>, token: string | undefined, signal: AbortSignal | undefined) => w.#process(job, token, signal);
    w.#bullConnection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null, connectionName: 'roomgate-egress-bullmq' });
    w.#bullConnection.on('error', () => {});
    w.#worker = new Worker<JobSpec>(EGRESS_QUEUE, processor, {
      connection: w.#bullConnection,
      prefix: BULL_PREFIX,
      // Named, so the queue's overview (the console) can tell which worker holds which job.
      name: `${os.hostname()}:${process.pid}`,
      concurrency: opts.concurrency ?? 32,
      lockDuration: stallMs,
      stalledInterval: Math.max(1000, Math.floor(stallMs / 2)),
      maxStalledCount: 1,
    });
    w.#worker.on('error', (err) => w.#log.warn({ err: err.message }, 'queue error (Redis?)'));
    // A job BullMQ itself failed (stalled twice, …) must not stay ACTIVE in its record.
    w.#worker.on('failed', (job, err) => {
      if (!job || w.#runs.has(job.id ?? '')) return;
      w.#records
        .transition(job.id!, { type: 'end', status: EgressStatus.EGRESS_FAILED }, (i) => {
          i.error = `job failed: ${err.message}`.slice(0, 500);
          i.endedAt = nowNs();
        })
        .catch((e: unknown) => w.#log.warn({ egress: job.id, err: (e as Error).message }, 'could not record a failed job'));
    });
    const resumed = await w.#storage.resumePending().catch(() => 0);
    w.#log.info({ capacity: opts.egress.max_cpu, gateway: opts.gatewayUrl, resumedUploads: resumed }, 'egress worker ready');
    return w;
  }

  /** Cores reserved by running jobs (metrics, tests). */
  get reservedCpu(): number {
    return this.#used;
  }

  get runningJobs(): string[] {
    return [...this.#runs.keys()];
  }

  #cost(kind: EgressKind | 'room_composite'): number {
    const e = this.#opts.egress;
    return kind === 'track' ? e.cost_track : kind === 'track_composite' ? e.cost_track_composite : kind === 'participant' ? e.cost_participant : e.cost_room_composite;
  }

  #reserve(cost: number): boolean {
    if (this.#used > 0 && this.#used + cost > this.#opts.egress.max_cpu + 1e-9) return false;
    this.#used += cost;
    return true;
  }

  #onControl(message: string): void {
    let parsed;
    try {
      parsed = ControlSchema.safeParse(JSON.parse(message));
    } catch {
      return;
    }
    if (!parsed.success) return;
    const m = parsed.data;
    const run = this.#runs.get(m.egressId);
    if (!run) return;
    if (m.type === 'stop') {
      // Through BullMQ's own cancellation: the processor's AbortSignal stops the run.
      this.#worker.cancelJob(m.egressId, 'stop' satisfies StopReason);
    } else if (m.type === 'update_stream') {
      run.updateStream(m.add, m.remove);
    } else {
      run.updateLayout(m.layout);
    }
  }

  async #process(job: Job<JobSpec>, token: string | undefined, signal: AbortSignal | undefined): Promise<string> {
    const parsed = JobSpecSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`invalid egress job: ${parsed.error.message}`);
    // The processor declares three parameters, so BullMQ passes the job's signal: it is how a run stops.
    if (!signal) throw new UnrecoverableError('BullMQ passed the egress processor no AbortSignal');
    let spec: JobSpec;
    try {
      spec = unsealSpec(parsed.data, this.#jobKey);
    } catch (err) {
      throw new UnrecoverableError(`invalid egress job: ${(err as Error).message}`);
    }
    const log = this.#log.child({ egress: spec.egressId });
    const info = await this.#store.get(spec.egressId);
    if (!info || isFinal(info.status)) return 'already ended';
    const progress = (typeof job.progress === 'object' ? job.progress : {}) as Partial<JobProgress>;
    if (progress.phase) return recoverStalledJob({ spec, progress, storage: this.#storage, records: this.#records, log });
    if (await this.#store.stopRequested(spec.egressId)) {
      await this.#records.transition(spec.egressId, { type: 'end', status: EgressStatus.EGRESS_ABORTED }, (i) => {
        i.error = 'stopped before it started';
        i.errorCode = 412;
        i.endedAt = nowNs();
      });
      return 'aborted';
    }
    const cost = this.#cost(spec.source.kind);
    if (!this.#reserve(cost)) {
      // No budget here: back to the queue for a moment (this worker or another takes it then).
      await job.moveToDelayed(Date.now() + 1000, token);
      throw new DelayedError();
    }
    const run = new EgressRun({
      spec,
      records: this.#records,
      taps: this.#taps,
      storage: this.#storage,
      progress: (p) => job.updateProgress(p as unknown as object),
      signal,
      rtpHost: this.#opts.egress.rtp_host,
      workDir: path.join(os.tmpdir(), `roomgate-egress-${process.pid}-${spec.egressId}`),
      maxDuration: this.#maxDuration(spec),
      progressInterval: this.#opts.egress.progress_interval,
      log,
    });
    this.#runs.set(spec.egressId, run);
    try {
      // Asked before the run existed: the same cancellation as a later one.
      if (this.#closing) this.#worker.cancelJob(job.id!, 'drain' satisfies StopReason);
      if (await this.#store.stopRequested(spec.egressId).catch(() => false)) this.#worker.cancelJob(job.id!, 'stop' satisfies StopReason);
      await run.run();
      return 'done';
    } finally {
      this.#runs.delete(spec.egressId);
      this.#used = Math.max(0, this.#used - cost);
    }
  }

  #maxDuration(spec: JobSpec): number {
    const e = this.#opts.egress;
    const limits = [spec.file ? e.file_max_duration : 0, spec.stream ? e.stream_max_duration : 0, spec.segments ? e.segment_max_duration : 0].filter((n) => n > 0);
    return limits.length ? Math.min(...limits) : 0;
  }

  /**
   * Graceful stop: no new jobs; running egresses finish as a StopEgress would (COMPLETE with the
   * real duration, uploaded) within `drainMs`. One still finishing after that ends FAILED saying
   * so, with what it recorded left where it was written; then the queue consumer closes.
   */
  close(drainMs = this.#opts.egress.drain_timeout * 1000): Promise<void> {
    this.#closing ??= (async () => {
      this.#worker.cancelAllJobs('drain' satisfies StopReason);
      // BullMQ's close waits for the running processors: they are what drains.
      const drained = this.#worker.close();
      const period = new AbortController();
      const late = await Promise.race([drained.then(() => false, () => false), sleep(drainMs, period.signal).then(() => !period.signal.aborted)]);
      period.abort();
      if (late) {
        const left = [...this.#runs.keys()];
        this.#log.warn({ egresses: left, drainMs }, 'egresses still finishing after the drain period: ending them FAILED');
        for (const id of left) {
          await this.#records
            .transition(id, { type: 'end', status: EgressStatus.EGRESS_FAILED }, (i) => {
              i.error = `the egress worker shut down before this egress finished (drain period of ${Math.round(drainMs / 1000)} s); what was recorded stays where it was being written`;
              i.endedAt = nowNs();
            })
            .catch((err: unknown) => this.#log.warn({ egress: id, err: (err as Error).message }, 'could not record an egress cut short by the drain period'));
        }
        await this.#worker.close(true).catch(() => undefined);
      }
      const steps: [string, () => Promise<unknown>][] = [
        ['subscriber', () => this.#subscriber.quit()],
        ['webhooks', () => this.#webhooks.close()],
        ['redis', () => this.#redis.quit()],
        ['bullmq connection', () => this.#bullConnection.quit()],
      ];
      this.#storage.close();
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (err) {
          this.#log.warn({ step: name, err: (err as Error).message }, 'egress worker shutdown step failed');
        }
      }
    })();
    return this.#closing;
  }
}
