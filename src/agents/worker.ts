// The worker process side: connects to the gateway's /agent WebSocket with a token carrying the
// `agent` grant, registers one agent, takes offered jobs up to its capacity and runs entry(ctx) for
// each, reporting running/done/failed and its load. A dropped connection ends its jobs (the gateway
// re-offers them) and the worker registers again.
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { retry, RetryAbortedError, sleep } from '../async.ts';
import { mintToken } from '../auth/tokens.ts';
import { TypedEmitter } from '../emitter.ts';
import { moduleLogger, type Logger } from '../logger.ts';
import { JobContext, type JobInfo } from './job.ts';
import { AGENT_PATH, type GatewayMessage, type JobDescription, type WorkerMessage } from './protocol.ts';

export interface AgentDefinition {
  /** The name dispatches ask for (1-64 letters, digits, _ . -). */
  name: string;
  /** Join every new room (automatic dispatch); otherwise only explicit dispatches start it. */
  automatic?: boolean;
  /** Runs once per job. Connect with ctx.connect(); the job lasts until the room ends or ctx.shutdown(). */
  entry(ctx: JobContext): Promise<void> | void;
}

export function defineAgent(def: AgentDefinition): AgentDefinition {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(def.name)) throw new TypeError(`agent name '${def.name}': use 1-64 letters, digits, _ . -`);
  if (typeof def.entry !== 'function') throw new TypeError('agent entry must be a function');
  return Object.freeze({ ...def });
}

export interface WorkerOptions {
  /** The gateway's http(s):// or ws(s):// URL. @defaultValue LIVEKIT_URL */
  url?: string;
  /** @defaultValue LIVEKIT_API_KEY */
  apiKey?: string;
  /** @defaultValue LIVEKIT_API_SECRET */
  apiSecret?: string;
  /** Jobs run at once, 1 to 1000 (what the gateway accepts). @defaultValue 1 */
  capacity?: number;
  /** Reported load, 0..1, sampled every loadIntervalMs; defaults to running jobs / capacity. */
  load?: () => number;
  loadIntervalMs?: number;
  log?: Logger;
}

export type WorkerEvents = {
  registered: [workerId: string];
  jobStarted: [job: JobInfo];
  jobEnded: [job: JobInfo, status: 'done' | 'failed', error: string | undefined];
  /** The gateway connection dropped; the worker reconnects. */
  disconnected: [reason: string];
};

const RECONNECT_DELAYS_MS = [500, 1000, 2000, 5000];

export class AgentWorker extends TypedEmitter<WorkerEvents> {
  readonly agent: AgentDefinition;
  readonly #opts: Required<Omit<WorkerOptions, 'load'>> & Pick<WorkerOptions, 'load'>;
  readonly #jobs = new Map<string, JobContext>();
  /** Jobs the gateway refused to let us run (accept or update answered with an error): why. */
  readonly #refused = new Map<string, string>();
  #ws: WebSocket | undefined;
  #id: string | undefined;
  #closing: Promise<void> | undefined;
  /** Aborted by close(): cuts a reconnect wait short. */
  readonly #stop = new AbortController();
  #loadTimer: NodeJS.Timeout | undefined;

  private constructor(agent: AgentDefinition, opts: WorkerOptions) {
    super();
    this.agent = agent;
    const url = opts.url ?? process.env.LIVEKIT_URL;
    const apiKey = opts.apiKey ?? process.env.LIVEKIT_API_KEY;
    const apiSecret = opts.apiSecret ?? process.env.LIVEKIT_API_SECRET;
    if (!url || !apiKey || !apiSecret) throw new TypeError('url, apiKey and apiSecret are required (or LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)');
    const capacity = opts.capacity ?? 1;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1000) throw new TypeError('capacity must be an integer from 1 to 1000');
    this.#opts = { url, apiKey, apiSecret, capacity, loadIntervalMs: 5000, log: moduleLogger('agent-worker', { agent: agent.name }), ...(opts.load ? { load: opts.load } : {}) };
    this.onListenerError((event, err) => this.#opts.log.error({ event, err }, 'worker listener threw'));
  }

  /** Connects and registers; rejects when the gateway refuses (bad token, no agent grant). */
  static async start(agent: AgentDefinition, opts: WorkerOptions = {}): Promise<AgentWorker> {
    const worker = new AgentWorker(agent, opts);
    await worker.#connect();
    worker.#loadTimer = setInterval(() => worker.#reportLoad(), worker.#opts.loadIntervalMs);
    return worker;
  }

  get id(): string | undefined {
    return this.#id;
  }

  get activeJobs(): JobInfo[] {
    return [...this.#jobs.values()].map((c) => c.job);
  }

  #connect(): Promise<void> {
    const { url, apiKey, apiSecret, capacity, log } = this.#opts;
    return new Promise<void>((resolve, reject) => {
      void (async () => {
        const token = await mintToken(apiKey, apiSecret, { identity: `worker-${this.agent.name}`, video: { agent: true }, ttl: 3600 });
        const base = url.replace(/^http/, 'ws').replace(/\/+$/, '');
        const ws = new WebSocket(`${base}${AGENT_PATH}?access_token=${encodeURIComponent(token)}`);
        this.#ws = ws;
        let registered = false;
        ws.on('error', (err) => log.debug({ err: err.message }, 'agent socket error'));
        ws.on('open', () => this.#send({ type: 'register', agentName: this.agent.name, capacity, automatic: this.agent.automatic ?? false }));
        ws.on('message', (data) => {
          let msg: GatewayMessage;
          try {
            msg = JSON.parse(String(data)) as GatewayMessage;
          } catch {
            return;
          }
          if (msg.type === 'registered') {
            registered = true;
            this.#id = msg.workerId;
            log.info({ worker: msg.workerId }, 'agent worker registered');
            this.safeEmit('registered', msg.workerId);
            resolve();
          } else if (msg.type === 'error' && !registered) {
            // Refused before registering (bad token, no agent grant, a register the gateway finds
            // invalid): the gateway may keep the socket open, so fail now rather than hang.
            reject(new Error(`gateway refused the worker: ${msg.code}: ${msg.message}`));
            ws.close(1000, 'registration refused');
          } else this.#onMessage(msg);
        });
        ws.on('close', (code, reason) => {
          if (this.#ws === ws) this.#ws = undefined;
          if (!registered) return reject(new Error(`gateway refused the worker: ${code} ${String(reason)}`));
          if (!this.#closing) {
            this.#lost(`connection closed (${code})`).catch((err: unknown) => this.#opts.log.error({ err }, 'reconnecting to the gateway stopped'));
          }
        });
      })().catch(reject);
    });
  }

  /** The gateway re-offers our jobs once it sees us gone, so they stop here. */
  async #lost(reason: string): Promise<void> {
    this.#opts.log.warn({ reason, jobs: this.#jobs.size }, 'lost the gateway connection');
    this.safeEmit('disconnected', reason);
    for (const ctx of this.#jobs.values()) ctx.shutdown('gateway connection lost');
    try {
      await retry(() => this.#connect(), {
        attempts: Infinity, // until it works or the worker closes
        backoff: RECONNECT_DELAYS_MS,
        waitFirst: true,
        signal: this.#stop.signal,
        onRetry: (err) => this.#opts.log.warn({ err: (err as Error).message }, 'reconnecting to the gateway failed'),
      });
    } catch (err) {
      if (!(err instanceof RetryAbortedError)) throw err; // closed meanwhile: nothing to reconnect
    }
  }

  #send(msg: WorkerMessage): void {
    if (this.#ws?.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(msg));
  }

  #reportLoad(): void {
    const load = this.#opts.load ? this.#opts.load() : this.#jobs.size / this.#opts.capacity;
    this.#send({ type: 'load', load: Math.max(0, Math.min(1, Number.isFinite(load) ? load : 1)) });
  }

  #onMessage(msg: GatewayMessage): void {
    switch (msg.type) {
      case 'offer':
        if (this.#closing || this.#jobs.size >= this.#opts.capacity) {
          this.#send({ type: 'reject', jobId: msg.job.id, reason: this.#closing ? 'worker closing' : 'at capacity' });
          return;
        }
        this.#send({ type: 'accept', jobId: msg.job.id });
        this.#run(msg.job).catch((err: unknown) => this.#opts.log.error({ err, job: msg.job.id }, 'agent job failed outside its entry'));
        return;
      case 'terminate':
        this.#jobs.get(msg.jobId)?.shutdown(`terminated by the gateway: ${msg.reason}`);
        return;
      case 'error': {
        this.#opts.log.warn({ code: msg.code, job: msg.jobId }, `gateway: ${msg.message}`);
        // An error about one of our jobs (its accept came after the offer lapsed, its update was
        // refused) means the gateway does not count it as ours: it may be running elsewhere.
        const ctx = msg.jobId ? this.#jobs.get(msg.jobId) : undefined;
        if (ctx && msg.jobId && !this.#refused.has(msg.jobId)) {
          this.#refused.set(msg.jobId, `refused by the gateway: ${msg.code}: ${msg.message}`);
          ctx.shutdown(`refused by the gateway: ${msg.message}`);
        }
        return;
      }
      default:
        return;
    }
  }

  async #run(job: JobDescription): Promise<void> {
    const { url, apiKey, apiSecret, log } = this.#opts;
    const ctx = new JobContext(job, { url, apiKey, apiSecret, log });
    this.#jobs.set(job.id, ctx);
    this.#reportLoad();
    this.#send({ type: 'update', jobId: job.id, status: 'running' });
    this.safeEmit('jobStarted', ctx.job);
    let error: string | undefined;
    try {
      await this.agent.entry(ctx);
      // Returning from entry() after connecting does not end the job: the agent's handlers keep running.
      if (ctx.connected) await ctx.ended();
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      ctx.log.warn({ err }, 'agent job failed');
    }
    await ctx.close();
    this.#jobs.delete(job.id);
    const refused = this.#refused.get(job.id);
    this.#refused.delete(job.id);
    if (refused) error ??= refused;
    // A refused job is not ours as far as the gateway goes: reporting it would only draw another error.
    else this.#send({ type: 'update', jobId: job.id, status: error ? 'failed' : 'done', ...(error ? { error: error.slice(0, 2000) } : {}) });
    this.#reportLoad();
    this.safeEmit('jobEnded', ctx.job, error ? 'failed' : 'done', error);
  }

  /** Ends running jobs (their agents leave the rooms) and disconnects. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      clearInterval(this.#loadTimer);
      const running = [...this.#jobs.values()];
      for (const ctx of running) ctx.shutdown('worker closing');
      // Each job reports done and leaves its room before the socket goes.
      const deadline = Date.now() + 5000;
      while (this.#jobs.size > 0 && Date.now() < deadline) await sleep(50);
      const ws = this.#ws;
      if (ws && ws.readyState !== WebSocket.CLOSED) {
        await new Promise<void>((resolve) => {
          ws.once('close', () => resolve());
          ws.close(1000, 'worker closing');
          setTimeout(resolve, 2000).unref();
        });
      }
    })();
    return this.#closing;
  }
}

/** Starts a worker for `agent` (options default to LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET). */
export function runWorker(agent: AgentDefinition, opts: WorkerOptions = {}): Promise<AgentWorker> {
  return AgentWorker.start(agent, opts);
}

/**
 * For an agent file that is also a program: runs a worker when the file is the process's entry
 * point (`node --import tsx my-agent.ts`), and closes it on SIGINT/SIGTERM.
 */
export function runIfMain(importMetaUrl: string, agent: AgentDefinition, opts: WorkerOptions = {}): void {
  const entry = process.argv[1];
  if (!entry || pathToFileURL(entry).href !== importMetaUrl) return;
  runWorker(agent, opts).then(
    (worker) => {
      const stop = (): void => {
        worker.close().then(
          () => process.exit(0),
          (err: unknown) => {
            console.error('closing the agent worker failed:', err instanceof Error ? err.message : err);
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
