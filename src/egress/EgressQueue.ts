// The API side of the queue: StartEgress adds a BullMQ job (id = egress id) and returns at once,
// whether or not a worker is free; StopEgress / UpdateStream reach the running job's worker over
// Redis pub/sub, or change the job while it still waits.
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { BULL_PREFIX, CONTROL_CHANNEL, EGRESS_QUEUE, type ControlMessage, type JobSpec } from './contract.ts';
import { sealSpec, unsealSpec } from './jobSecrets.ts';

export interface QueueOverview {
  waiting: number;
  active: number;
  /** Connected BullMQ workers; `name` is `host:pid` (the worker's `:w:` client name suffix). */
  workers: { name: string; addr: string; ageSeconds: number }[];
  activeJobs: { egressId: string; kind: JobSpec['source']['kind']; worker: string }[];
}

export class EgressQueue {
  readonly #queue: Queue<JobSpec>;
  readonly #connection: Redis;
  readonly #key: Buffer;

  /** `jobKey` seals the job data's secrets (src/egress/jobSecrets.ts). */
  constructor(redisUrl: string, jobKey: Buffer) {
    this.#key = jobKey;
    // Fail fast while Redis is away: the API answers `unavailable` rather than hanging.
    this.#connection = new Redis(redisUrl, { maxRetriesPerRequest: 1, commandTimeout: 5000, connectionName: 'roomgate-egress-queue' });
    this.#connection.on('error', () => {});
    this.#queue = new Queue<JobSpec>(EGRESS_QUEUE, { connection: this.#connection, prefix: BULL_PREFIX });
    this.#queue.on('error', () => {});
  }

  async add(spec: JobSpec): Promise<void> {
    await this.#queue.add(spec.source.kind, sealSpec(spec, this.#key), {
      jobId: spec.egressId,
      attempts: 1,
      removeOnComplete: { age: 24 * 3600 },
      removeOnFail: { age: 7 * 24 * 3600 },
    });
  }

  /** The job as stored: its secrets sealed (room, source and names are readable). */
  job(egressId: string): Promise<Job<JobSpec> | undefined> {
    return this.#queue.getJob(egressId);
  }

  /** The job and its data with the secrets opened. */
  async spec(egressId: string): Promise<{ job: Job<JobSpec>; spec: JobSpec } | undefined> {
    const job = await this.#queue.getJob(egressId);
    return job ? { job, spec: unsealSpec(job.data, this.#key) } : undefined;
  }

  /** Replaces the job's data (sealed again). */
  async updateSpec(job: Job<JobSpec>, spec: JobSpec): Promise<void> {
    await job.updateData(sealSpec(spec, this.#key));
  }

  /** Removes a job no worker holds yet; false when a worker runs it (or it is gone). */
  async removeIfWaiting(egressId: string): Promise<boolean> {
    const job = await this.#queue.getJob(egressId);
    if (!job) return false;
    const state = await job.getState();
    if (state !== 'waiting' && state !== 'delayed' && state !== 'prioritized' && state !== 'waiting-children') return false;
    try {
      await job.remove();
      return true;
    } catch {
      return false; // a worker took it between the two calls: it hears the stop message instead
    }
  }

  /** Waiting and active jobs and the connected workers, for the operator's console. */
  async overview(): Promise<QueueOverview> {
    const counts = await this.#queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
    const [workers, active] = await Promise.all([this.#queue.getWorkers(), this.#queue.getActive(0, 199)]);
    return {
      waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0),
      active: counts.active ?? 0,
      workers: workers.map((w) => {
        const raw = w.rawname ?? '';
        const at = raw.indexOf(':w:');
        return { name: at >= 0 ? raw.slice(at + 3) : raw, addr: w.addr ?? '', ageSeconds: Number(w.age ?? 0) };
      }),
      activeJobs: active.map((j) => ({ egressId: j.id ?? '', kind: j.data.source.kind, worker: j.processedBy ?? '' })),
    };
  }

  async control(message: ControlMessage): Promise<void> {
    await this.#connection.publish(CONTROL_CHANNEL, JSON.stringify(message));
  }

  async close(): Promise<void> {
    await this.#queue.close().catch(() => undefined);
    await this.#connection.quit().catch(() => this.#connection.disconnect());
  }
}
