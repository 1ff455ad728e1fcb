// Which agent runs where: dispatches (automatic, explicit, from a token's roomConfig), their jobs,
// and the scheduling of offers to the registered workers (WorkerRegistry.ts). A job is offered to
// the least loaded worker of its agent name; a worker that rejects, stays silent or dies hands the
// job on. The decisions themselves are pure functions (dispatchDecisions.ts). State lives in this
// process: workers are connected here and a room lives on one node, so its dispatches are kept by
// that node.
import {
  AgentDispatch,
  AgentDispatchState,
  Job,
  JobState,
  JobStatus,
  JobType,
  type RoomConfiguration,
  type Room,
} from '@livekit/protocol';
import { roomConfiguration, type Claims } from '../../auth/grants.ts';
import { mintToken } from '../../auth/tokens.ts';
import { TypedEmitter } from '../../emitter.ts';
import { ApiError, notFound } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { Logger } from '../../logger.ts';
import type { WebhookEventName, WebhookPayload } from '../../webhooks/WebhookNotifier.ts';
import { AGENT_JOB_ATTRIBUTE, AGENT_NAME_ATTRIBUTE, type GatewayMessage, type JobDescription } from '../protocol.ts';
import { nowNs } from '../../time.ts';
import { agentJoinRefusal, agentsToDispatch, endsWithWebhook, retryDelayMs, stillPassedOver } from './dispatchDecisions.ts';
import { WorkerRegistry, type WorkerEntry, type WorkerHandle } from './WorkerRegistry.ts';

export type { WorkerHandle } from './WorkerRegistry.ts';

/** What the dispatcher needs of the rooms. */
export interface DispatchRooms {
  liveRoom(name: string): { info(): Room } | undefined;
  /** Throws not_found when the room does not exist. */
  getRoom(name: string): Promise<Room>;
  /** Throws not_found when the room or participant is gone. */
  removeParticipant(room: string, identity: string): Promise<void>;
}

export interface DispatcherOptions {
  rooms: DispatchRooms;
  /** Mints the join token of an agent participant. */
  mintJoinToken(grant: { room: string; identity: string; agentName: string; jobId: string }): Promise<string>;
  webhooks: { notify(event: WebhookEventName, payload: WebhookPayload): void };
  log: Logger;
  /** How long a worker may take to accept or reject an offer before the job goes elsewhere. */
  offerTimeoutMs?: number;
  /** How long a worker that declined a job (or let its offer lapse) is passed over for that job. */
  triedBackoffMs?: number;
  /** How long an agent whose job the gateway ended may take to leave before it is removed. */
  leaveGraceMs?: number;
}

/**
 * The agents' token grants: scoped to joining the job's room. No `agent` grant (kind "agent" is
 * what marks the participant; the grant would let the token register workers on /agent), and
 * short-lived, since the worker joins right away and a reconnect resumes the session.
 */
export function agentJoinTokens(apiKey: string, apiSecret: string): DispatcherOptions['mintJoinToken'] {
  return ({ room, identity, agentName, jobId }) =>
    mintToken(apiKey, apiSecret, {
      identity,
      name: agentName,
      kind: 'agent',
      attributes: { [AGENT_JOB_ATTRIBUTE]: jobId, [AGENT_NAME_ATTRIBUTE]: agentName },
      video: { roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true, canUpdateOwnMetadata: true },
      ttl: 600,
    });
}

/** What joining needs from the room layer (signaling's RoomJoiner, kept generic here). */
interface JoiningRooms<Sink, Joined, Resumed> {
  join(claims: Claims, sink: Sink): Promise<Joined>;
  resume(claims: Claims, sink: Sink): Resumed;
}

export type DispatcherEvents = {
  jobStatus: [job: Job];
  workerRegistered: [workerId: string, agentName: string];
  workerGone: [workerId: string];
};

interface JobEntry {
  job: Job;
  dispatch: DispatchEntry;
  identity: string;
  attempt: number;
  /** Worker holding the offer or running the job. */
  workerId: string | undefined;
  offered: boolean;
  offerTimer: NodeJS.Timeout | undefined;
  /** Offers the job again once a declining worker's backoff is over (no other worker was free). */
  retryTimer: NodeJS.Timeout | undefined;
  /**
   * Workers that rejected or let an offer time out → until when they are passed over. Expiring, so
   * a worker that was busy once (or a transient failure) gets the job later.
   */
  tried: Map<string, number>;
  ended: boolean;
  /** The agent participant of the current attempt, once it joined. */
  participantSid?: string;
}

interface DispatchEntry {
  info: AgentDispatch;
  jobs: JobEntry[];
}

export class AgentDispatcher extends TypedEmitter<DispatcherEvents> {
  readonly #opts: Required<DispatcherOptions>;
  readonly #workers = new WorkerRegistry();
  readonly #dispatches = new Map<string, DispatchEntry>();
  readonly #byRoom = new Map<string, Set<string>>();
  readonly #jobs = new Map<string, JobEntry>();
  /** Removals of agent participants whose job the gateway ended, after their grace period. */
  readonly #evictions = new Set<NodeJS.Timeout>();
  #closed = false;

  constructor(opts: DispatcherOptions) {
    super();
    this.#opts = { offerTimeoutMs: 10_000, triedBackoffMs: 5_000, leaveGraceMs: 2_000, ...opts };
    this.onListenerError((event, err) => this.#opts.log.error({ event, err }, 'dispatcher listener threw'));
  }

  get workerCount(): number {
    return this.#workers.size;
  }

  /** Registered workers, for health and tests. */
  workers(): { id: string; agentName: string; capacity: number; load: number; jobs: string[] }[] {
    return [...this.#workers.values()].map((w) => ({
      id: w.handle.id,
      agentName: w.handle.agentName,
      capacity: w.handle.capacity,
      load: w.load,
      jobs: [...w.jobs],
    }));
  }

  job(jobId: string): Job | undefined {
    return this.#jobs.get(jobId)?.job.clone();
  }

  // ---- workers ------------------------------------------------------------------------------

  addWorker(handle: WorkerHandle): void {
    this.#workers.add(handle);
    this.#opts.log.info({ worker: handle.id, agent: handle.agentName, capacity: handle.capacity, automatic: handle.automatic }, 'agent worker registered');
    this.safeEmit('workerRegistered', handle.id, handle.agentName);
    // Jobs that waited for a worker of this name (none was there, or all were busy or declined).
    this.#drain(handle.agentName);
  }

  setLoad(workerId: string, load: number): void {
    const w = this.#workers.get(workerId);
    if (!w) return;
    const lower = load < w.load;
    w.load = load;
    // A worker that got lighter may now be the best place for a waiting job.
    if (lower) this.#drain(w.handle.agentName);
  }

  /** The worker's connection closed: its jobs are offered again, to the others. */
  removeWorker(workerId: string): void {
    const w = this.#workers.remove(workerId);
    if (!w) return;
    this.safeEmit('workerGone', workerId);
    const orphans = [...w.jobs, ...w.offers].map((id) => this.#jobs.get(id)).filter((e): e is JobEntry => !!e && !e.ended);
    this.#opts.log.info({ worker: workerId, jobs: orphans.length }, 'agent worker gone; re-offering its jobs');
    for (const entry of orphans) {
      clearTimeout(entry.offerTimer);
      entry.workerId = undefined;
      entry.offered = false;
      // The dead attempt's agent leaving (or being replaced by the next one's) ends nothing.
      entry.participantSid = undefined;
      entry.attempt++;
      const error = `worker ${workerId} disconnected`;
      // The dead attempt ends as far as webhooks go (every agent_job_started gets one ended); the
      // next attempt sends its own agent_job_started when it runs.
      if (this.#started(entry)) {
        this.#setState(entry, JobStatus.JS_FAILED, { error, endedAt: nowNs() });
        this.#notify('agent_job_ended', entry);
      }
      this.#setState(entry, JobStatus.JS_PENDING, { workerId: '', error, startedAt: 0n, endedAt: 0n });
    }
    for (const entry of orphans) this.#offerLater(entry);
  }

  /**
   * `identity`: the participant identity the worker chose (LiveKit workers answer one); the job's
   * token must then be minted for it. Returns the identity and room the agent joins.
   */
  accept(workerId: string, jobId: string, identity?: string): { identity: string; room: string } {
    const entry = this.#jobs.get(jobId);
    const w = this.#workers.get(workerId);
    if (!entry || !w || entry.workerId !== workerId || !entry.offered) {
      throw notFound(`job '${jobId}' is not offered to this worker`);
    }
    if (identity !== undefined && (identity.length === 0 || identity.length > 128)) {
      throw new ApiError('invalid_argument', 'the agent participant identity must have 1 to 128 characters');
    }
    if (identity) entry.identity = identity;
    clearTimeout(entry.offerTimer);
    entry.offered = false;
    w.offers.delete(jobId);
    w.jobs.add(jobId);
    this.#setState(entry, JobStatus.JS_PENDING, { workerId, participantIdentity: entry.identity });
    return { identity: entry.identity, room: entry.dispatch.info.room };
  }

  /**
   * A participant left a room: a job of a worker whose jobs end with their participant ends here.
   * By sid: a dead worker's agent, replaced by the next attempt's with the same identity, ends nothing.
   */
  participantLeft(room: string, identity: string, sid: string): void {
    for (const entry of this.#jobs.values()) {
      if (entry.ended || entry.identity !== identity || entry.participantSid !== sid || entry.dispatch.info.room !== room || entry.offered || !entry.workerId) continue;
      const w = this.#workers.get(entry.workerId);
      if (!w?.handle.endsWithParticipant) continue;
      this.#end(entry, JobStatus.JS_SUCCESS, '', false);
      this.#drain(entry.job.agentName);
    }
  }

  reject(workerId: string, jobId: string, reason: string | undefined): void {
    const entry = this.#jobs.get(jobId);
    const w = this.#workers.get(workerId);
    if (!entry || !w || entry.workerId !== workerId || !entry.offered) throw notFound(`job '${jobId}' is not offered to this worker`);
    this.#opts.log.info({ job: jobId, worker: workerId, reason }, 'agent job offer rejected');
    this.#withdraw(entry, w);
    this.#offerLater(entry);
    // The slot this offer held is free again, for another waiting job.
    this.#drain(entry.job.agentName);
  }

  /** running, done or failed, reported by the worker that accepted the job. */
  update(workerId: string, jobId: string, status: 'running' | 'done' | 'failed', error?: string): void {
    const w = this.#workers.get(workerId);
    if (w?.ending.has(jobId)) {
      // The last word on a job the gateway ended: its slot is free now.
      if (status === 'running') return;
      this.#workers.release(w, jobId);
      this.#drain(w.handle.agentName);
      return;
    }
    const entry = this.#jobs.get(jobId);
    if (!entry || entry.workerId !== workerId || entry.offered) {
      // A job the gateway already ended (room closed, dispatch deleted) may still report; that is fine.
      if (entry?.ended) return;
      throw notFound(`job '${jobId}' is not running on this worker`);
    }
    if (entry.ended) return;
    if (status === 'running') {
      if (entry.job.state?.status === JobStatus.JS_RUNNING) return;
      // error: a previous attempt's "worker disconnected" no longer describes the job.
      this.#setState(entry, JobStatus.JS_RUNNING, { startedAt: nowNs(), error: '' });
      this.#notify('agent_job_started', entry);
      return;
    }
    this.#end(entry, status === 'done' ? JobStatus.JS_SUCCESS : JobStatus.JS_FAILED, error ?? '', false);
    // Its slot on the worker is free: a job waiting for one gets it.
    this.#drain(entry.job.agentName);
  }

  // ---- rooms --------------------------------------------------------------------------------

  /** A new room: one job per agent name that has an automatic worker. */
  roomStarted(room: Room): void {
    for (const agentName of this.#workers.automaticNames()) this.#createLater(room, { agentName, metadata: '' });
  }

  /** A participant joined; a token's roomConfig.agents asks for those agents in its room (once per name). */
  participantJoined(claims: Claims, room: Room): void {
    let config: RoomConfiguration | undefined;
    try {
      config = roomConfiguration(claims);
    } catch (err) {
      this.#opts.log.warn({ room: room.name, err: (err as Error).message }, 'ignoring unreadable roomConfig in join token');
      return;
    }
    if (!config) return;
    const present = this.#roomDispatches(room.name).map((d) => d.info.agentName);
    for (const a of agentsToDispatch(config.agents, present)) {
      this.#createLater(room, { agentName: a.agentName, metadata: a.metadata, attributes: a.attributes });
    }
  }

  roomFinished(room: Room): void {
    const dispatches = this.#roomDispatches(room.name);
    // All of the room's jobs end before any freed slot is handed on, so none goes to a job of this room.
    for (const d of dispatches) this.#deleteEntry(d, 'room closed');
    this.#byRoom.delete(room.name);
    for (const name of new Set(dispatches.map((d) => d.info.agentName))) this.#drain(name);
  }

  /**
   * Joins that pass the dispatcher: a token's roomConfig.agents dispatches, and an agent whose job
   * ended may not join.
   */
  gateJoins<Sink, Joined extends { room: { info(): Room }; participant: { sid: string } }, Resumed>(
    rooms: JoiningRooms<Sink, Joined, Resumed>,
  ): JoiningRooms<Sink, Joined, Resumed> {
    return {
      join: async (claims, sink) => {
        this.checkAgentJoin(claims);
        const joined = await rooms.join(claims, sink);
        const jobId = claims.attributes?.[AGENT_JOB_ATTRIBUTE];
        const entry = claims.kind === 'agent' && jobId ? this.#jobs.get(jobId) : undefined;
        if (entry) entry.participantSid = joined.participant.sid;
        this.participantJoined(claims, joined.room.info());
        return joined;
      },
      resume: (claims, sink) => rooms.resume(claims, sink),
    };
  }

  /**
   * An agent participant may join only while its job is live and accepted by a worker: a worker that
   * got the job just before the room was deleted must not bring the room back by joining it, and a
   * token from an offer that lapsed (or was rejected) must not put a second agent in the room.
   */
  checkAgentJoin(claims: Claims): void {
    const jobId = claims.attributes?.[AGENT_JOB_ATTRIBUTE];
    if (claims.kind !== 'agent' || !jobId) return;
    const entry = this.#jobs.get(jobId);
    const job = entry && { ended: entry.ended, room: entry.dispatch.info.room, identity: entry.identity, accepted: !!entry.workerId && !entry.offered };
    const refusal = agentJoinRefusal(jobId, job, claims.video?.room, claims.sub);
    if (refusal) throw refusal;
  }

  // ---- the AgentDispatchService API ---------------------------------------------------------

  async createDispatch(req: { room: string; agentName: string; metadata: string; attributes?: Record<string, string> }): Promise<AgentDispatch> {
    const live = this.#opts.rooms.liveRoom(req.room);
    if (!live) {
      await this.#opts.rooms.getRoom(req.room); // not_found for a room that does not exist
      throw new ApiError('unavailable', `room '${req.room}' has no live media on this node`);
    }
    const entry = await this.#create(live.info(), req);
    return this.#snapshot(entry);
  }

  listDispatches(room: string, dispatchId?: string): AgentDispatch[] {
    return this.#roomDispatches(room)
      .filter((d) => !dispatchId || d.info.id === dispatchId)
      .map((d) => this.#snapshot(d));
  }

  deleteDispatch(room: string, dispatchId: string): AgentDispatch {
    const entry = this.#dispatches.get(dispatchId);
    if (!entry || entry.info.room !== room) throw notFound(`dispatch '${dispatchId}' does not exist in room '${room}'`);
    this.#deleteEntry(entry, 'dispatch deleted');
    this.#drain(entry.info.agentName);
    const out = this.#snapshot(entry);
    out.state!.deletedAt = nowNs();
    return out;
  }

  /**
   * Gateway shutdown: live jobs end (terminate to their workers, agent_job_ended for those that ran,
   * status JS_FAILED "gateway shutting down": dispatches live in memory, so nothing resumes them).
   * Runs before the worker sockets close, so the workers hear it and no disconnect re-offers anything.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of this.#jobs.values()) {
      clearTimeout(entry.retryTimer);
      if (entry.ended) continue;
      const worker = entry.workerId ? this.#workers.get(entry.workerId) : undefined;
      worker?.handle.send({ type: 'terminate', jobId: entry.job.id, reason: 'gateway shutting down' });
      this.#end(entry, JobStatus.JS_FAILED, 'gateway shutting down', true);
    }
    for (const t of this.#evictions) clearTimeout(t);
    this.#evictions.clear();
    this.#workers.clearHolds();
  }

  // ---- internals ----------------------------------------------------------------------------

  #roomDispatches(room: string): DispatchEntry[] {
    return [...(this.#byRoom.get(room) ?? [])].map((id) => this.#dispatches.get(id)).filter((d): d is DispatchEntry => !!d);
  }

  #snapshot(d: DispatchEntry): AgentDispatch {
    const out = d.info.clone();
    out.state = new AgentDispatchState({ createdAt: d.info.state?.createdAt ?? 0n, jobs: d.jobs.map((j) => j.job.clone()) });
    return out;
  }

  async #create(room: Room, req: { agentName: string; metadata: string; attributes?: Record<string, string> }): Promise<DispatchEntry> {
    const info = new AgentDispatch({
      id: newId('AD_'),
      agentName: req.agentName,
      room: room.name,
      metadata: req.metadata,
      attributes: req.attributes ?? {},
      state: new AgentDispatchState({ createdAt: nowNs() }),
    });
    const dispatch: DispatchEntry = { info, jobs: [] };
    this.#dispatches.set(info.id, dispatch);
    let ids = this.#byRoom.get(room.name);
    if (!ids) this.#byRoom.set(room.name, (ids = new Set()));
    ids.add(info.id);
    const jobId = newId('AJ_');
    const entry: JobEntry = {
      job: new Job({
        id: jobId,
        dispatchId: info.id,
        type: JobType.JT_ROOM,
        room: room.clone(),
        agentName: req.agentName,
        metadata: req.metadata,
        attributes: req.attributes ?? {},
        state: new JobState({ status: JobStatus.JS_PENDING, updatedAt: nowNs() }),
      }),
      dispatch,
      identity: `agent-${jobId}`,
      attempt: 1,
      workerId: undefined,
      offered: false,
      offerTimer: undefined,
      retryTimer: undefined,
      tried: new Map(),
      ended: false,
    };
    dispatch.jobs.push(entry);
    this.#jobs.set(jobId, entry);
    this.#opts.log.info({ room: room.name, dispatch: info.id, job: jobId, agent: req.agentName }, 'agent dispatch created');
    this.safeEmit('jobStatus', entry.job.clone());
    await this.#offer(entry);
    return dispatch;
  }

  /** Least loaded worker of the job's agent name with room for one more, that has not just declined it. */
  #pick(entry: JobEntry): WorkerEntry | undefined {
    entry.tried = stillPassedOver(entry.tried, Date.now(), (id) => this.#workers.has(id));
    return this.#workers.pick(entry.job.agentName, entry.tried);
  }

  /**
   * Offers the waiting jobs of an agent name again, oldest first, as long as workers have room.
   * Called whenever capacity may have freed: a job ended, an offer was withdrawn, a worker reported
   * less load or registered.
   */
  #drain(agentName: string): void {
    if (this.#closed) return;
    for (const entry of this.#jobs.values()) {
      if (entry.ended || entry.workerId || entry.job.agentName !== agentName) continue;
      this.#offerLater(entry, true);
    }
  }

  /** #offer from a synchronous caller (an event, a timer): a failure is logged, not left unhandled. */
  #offerLater(entry: JobEntry, quiet = false): void {
    this.#offer(entry, quiet).catch((err: unknown) => this.#opts.log.error({ err, job: entry.job.id }, 'offering the agent job failed'));
  }

  /** #create from a room event: a failure is logged, not left unhandled. */
  #createLater(room: Room, req: { agentName: string; metadata: string; attributes?: Record<string, string> }): void {
    this.#create(room, req).catch((err: unknown) =>
      this.#opts.log.error({ err, room: room.name, agent: req.agentName }, 'could not create the agent dispatch'),
    );
  }

  async #offer(entry: JobEntry, quiet = false): Promise<void> {
    if (this.#closed || entry.ended || entry.workerId) return;
    clearTimeout(entry.retryTimer);
    entry.retryTimer = undefined;
    const w = this.#pick(entry);
    if (!w) {
      // Capacity freeing up (#drain) offers it again; a worker that declined it is asked again once
      // its backoff is over, in case it was the only one.
      const delay = retryDelayMs(entry.tried, Date.now());
      if (delay !== undefined) {
        entry.retryTimer = setTimeout(() => this.#offerLater(entry, true), delay);
        entry.retryTimer.unref();
      }
      if (!quiet) this.#opts.log.info({ job: entry.job.id, agent: entry.job.agentName }, 'no agent worker free for the job; it waits for one');
      return;
    }
    entry.workerId = w.handle.id;
    entry.offered = true;
    w.offers.add(entry.job.id);
    w.load = Math.min(1, w.load + 1 / w.handle.capacity);
    let token: string;
    try {
      token = await this.#opts.mintJoinToken({ room: entry.dispatch.info.room, identity: entry.identity, agentName: entry.job.agentName, jobId: entry.job.id });
    } catch (err) {
      this.#opts.log.error({ err, job: entry.job.id }, 'could not mint the agent join token');
      this.#withdraw(entry, w); // tried: the retry timer offers it again after the backoff
      this.#offerLater(entry, true);
      return;
    }
    // The worker may have gone, or the job ended, while the token was minted.
    if (entry.ended || entry.workerId !== w.handle.id || !this.#workers.has(w.handle.id)) return;
    const room = entry.job.room!;
    const job: JobDescription = {
      id: entry.job.id,
      dispatchId: entry.dispatch.info.id,
      agentName: entry.job.agentName,
      metadata: entry.job.metadata,
      room: { name: room.name, sid: room.sid },
      participantIdentity: entry.identity,
      token,
      attempt: entry.attempt,
    };
    entry.offerTimer = setTimeout(() => {
      this.#opts.log.warn({ job: entry.job.id, worker: w.handle.id }, 'agent worker did not answer the offer; offering elsewhere');
      this.#withdraw(entry, w);
      this.#offerLater(entry);
      this.#drain(entry.job.agentName);
    }, this.#opts.offerTimeoutMs);
    w.handle.send({ type: 'offer', job });
  }

  #withdraw(entry: JobEntry, w: WorkerEntry): void {
    clearTimeout(entry.offerTimer);
    w.offers.delete(entry.job.id);
    entry.tried.set(w.handle.id, Date.now() + this.#opts.triedBackoffMs);
    entry.workerId = undefined;
    entry.offered = false;
  }

  #deleteEntry(d: DispatchEntry, reason: string): void {
    for (const entry of d.jobs) {
      if (entry.ended) continue;
      const worker = entry.workerId ? this.#workers.get(entry.workerId) : undefined;
      worker?.handle.send({ type: 'terminate', jobId: entry.job.id, reason });
      // A worker that ignores terminate (or is stuck, or died and left a session behind) must not
      // leave its agent in the room. Mostly it has left by itself: not_found is ignored.
      this.#evict(d.info.room, entry.identity);
      this.#end(entry, JobStatus.JS_SUCCESS, '', true);
    }
    // Ended jobs stay listed with their dispatch until it goes (and refuse joins meanwhile).
    for (const entry of d.jobs) this.#jobs.delete(entry.job.id);
    this.#dispatches.delete(d.info.id);
    this.#byRoom.get(d.info.room)?.delete(d.info.id);
  }

  /** Removes the agent participant after a grace period (its worker was told to leave by itself). */
  #evict(room: string, identity: string): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      this.#evictions.delete(timer);
      this.#opts.rooms.removeParticipant(room, identity).then(
        () => this.#opts.log.info({ room, identity }, 'removed an agent whose job ended'),
        (err: unknown) => {
          // Gone already (it left, or the room closed): the usual case.
          if (err instanceof ApiError && err.code === 'not_found') return;
          this.#opts.log.warn({ room, identity, err }, 'could not remove an agent whose job ended');
        },
      );
    }, this.#opts.leaveGraceMs);
    timer.unref();
    this.#evictions.add(timer);
  }

  #started(entry: JobEntry): boolean {
    return (entry.job.state?.startedAt ?? 0n) !== 0n;
  }

  #end(entry: JobEntry, status: JobStatus, error: string, byGateway: boolean): void {
    entry.ended = true;
    clearTimeout(entry.offerTimer);
    clearTimeout(entry.retryTimer);
    const w = entry.workerId ? this.#workers.get(entry.workerId) : undefined;
    const accepted = !!w?.jobs.delete(entry.job.id);
    w?.offers.delete(entry.job.id);
    if (w && accepted && byGateway && !this.#closed) this.#workers.hold(w, entry.job.id, () => this.#drain(w.handle.agentName));
    const wasStarted = this.#started(entry);
    this.#setState(entry, status, { error, endedAt: nowNs() });
    this.#opts.log.info({ job: entry.job.id, status: JobStatus[status], error: error || undefined, byGateway }, 'agent job ended');
    // A job that never ran had no started event, so it gets no ended event either.
    if (endsWithWebhook(wasStarted, byGateway)) this.#notify('agent_job_ended', entry);
  }

  #setState(entry: JobEntry, status: JobStatus, patch: Partial<Pick<JobState, 'workerId' | 'participantIdentity' | 'error' | 'startedAt' | 'endedAt'>>): void {
    const state = entry.job.state ?? new JobState();
    Object.assign(state, patch, { status, updatedAt: nowNs() });
    entry.job.state = state;
    this.safeEmit('jobStatus', entry.job.clone());
  }

  #notify(event: 'agent_job_started' | 'agent_job_ended', entry: JobEntry): void {
    const room = this.#opts.rooms.liveRoom(entry.dispatch.info.room)?.info() ?? entry.job.room;
    this.#opts.webhooks.notify(event, { ...(room ? { room } : {}), job: entry.job.clone() });
  }
}
