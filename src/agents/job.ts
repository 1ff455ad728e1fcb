// What an agent's entry function gets: the job, a way into its room, and the end of the job as an
// AbortSignal. The job lasts until the room goes, the gateway ends it, or the agent calls shutdown();
// returning from entry() without having connected ends it too.
import { NodeParticipant } from '../client/node.ts';
import type { Logger } from '../logger.ts';
import type { JobDescription } from './protocol.ts';
import { AgentRoom } from './room.ts';

export interface JobInfo {
  id: string;
  dispatchId: string;
  agentName: string;
  /** Metadata given with the dispatch (CreateDispatch, roomConfig.agents). */
  metadata: string;
  roomName: string;
  /** The agent's identity in the room. */
  participantIdentity: string;
  /** 1 on the first run; more when the job moved here from a worker that died. */
  attempt: number;
}

export interface JobContextOptions {
  url: string;
  apiKey: string;
  apiSecret: string;
  log: Logger;
}

export class JobContext {
  readonly job: JobInfo;
  readonly log: Logger;
  readonly #token: string;
  readonly #opts: JobContextOptions;
  readonly #abort = new AbortController();
  #room: AgentRoom | undefined;
  #connecting: Promise<AgentRoom> | undefined;
  #leaving: Promise<void> | undefined;

  constructor(job: JobDescription, opts: JobContextOptions) {
    this.job = {
      id: job.id,
      dispatchId: job.dispatchId,
      agentName: job.agentName,
      metadata: job.metadata,
      roomName: job.room.name,
      participantIdentity: job.participantIdentity,
      attempt: job.attempt,
    };
    this.#token = job.token;
    this.#opts = opts;
    this.log = opts.log.child({ job: job.id, room: job.room.name });
  }

  /** Aborts when the job ends (room closed, dispatch deleted, shutdown()). */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The room, once connect() resolved. */
  get room(): AgentRoom {
    if (!this.#room) throw new Error('not connected: await ctx.connect() first');
    return this.#room;
  }

  get connected(): boolean {
    return this.#room !== undefined;
  }

  /** Joins the room as the job's agent participant (kind "agent"); subscribes to every track. */
  connect(): Promise<AgentRoom> {
    if (this.#abort.signal.aborted) return Promise.reject(new Error(`job ${this.job.id} has ended`));
    this.#connecting ??= (async () => {
      const p = await NodeParticipant.connect(this.#opts.url, this.#token);
      const room = new AgentRoom(p, this.#opts);
      room.onListenerError((event, err) => this.log.error({ event, err }, 'agent room listener threw'));
      if (this.#abort.signal.aborted) {
        await room.disconnect();
        throw new Error(`job ${this.job.id} ended while connecting`);
      }
      this.#room = room;
      room.once('disconnected', (reason) => this.shutdown(`disconnected: ${reason}`));
      return room;
    })();
    return this.#connecting;
  }

  /**
   * Ends the job: `signal` aborts and the agent leaves the room right away (even while entry() is
   * still running); the worker reports the job done once entry() has returned.
   */
  shutdown(reason = 'shutdown'): void {
    if (this.#abort.signal.aborted) return;
    this.#abort.abort(new Error(reason));
    // #leave logs a failed disconnect itself; this catch is for anything else it throws.
    this.#leave().catch((err: unknown) => this.log.error({ err }, 'leaving the room failed'));
  }

  /** Leaves the room once; a connect() still in flight sees the abort and leaves by itself. */
  #leave(): Promise<void> {
    this.#leaving ??= (async () => {
      const room = this.#room ?? (await this.#connecting?.catch(() => undefined));
      await room?.disconnect().catch((err: unknown) => this.log.warn({ err }, 'leaving the room failed'));
    })();
    return this.#leaving;
  }

  /** Resolves when the job ends. */
  ended(): Promise<void> {
    const signal = this.#abort.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  }

  /** Called by the worker when the job is over; resolves once the agent has left the room. */
  async close(): Promise<void> {
    this.shutdown('job finished');
    await this.#leave();
  }
}
