// The dispatcher's decisions as pure functions of what it knows, so they can be tested without
// workers, timers or rooms: which worker gets an offer, who is passed over and until when, when a
// waiting job is offered again, whether an agent may join its job's room, and which agents a
// token's roomConfig asks for.
import { ApiError } from '../../errors.ts';

/** A worker as an offer sees it. */
export interface WorkerView {
  id: string;
  agentName: string;
  capacity: number;
  /** Last reported load (0..1), raised locally for each offer until the next report. */
  load: number;
  /** Slots taken: running jobs, open offers, jobs still winding down. */
  busy: number;
  /** It said it is full (LiveKit workers report status, not a job count). */
  full: boolean;
}

/**
 * The worker an offer of an `agentName` job goes to: the least loaded one with room for one more
 * that is not passed over, the one with fewer jobs on a tie, the first registered after that.
 */
export function pickWorker(workers: Iterable<WorkerView>, agentName: string, passedOver: ReadonlySet<string> | ReadonlyMap<string, unknown>): WorkerView | undefined {
  let best: WorkerView | undefined;
  for (const w of workers) {
    if (w.agentName !== agentName || passedOver.has(w.id)) continue;
    if (w.busy >= w.capacity || w.full) continue;
    if (!best || w.load < best.load || (w.load === best.load && w.busy < best.busy)) best = w;
  }
  return best;
}

/** The workers still passed over for a job at `now`: backoffs not over, of workers still registered. */
export function stillPassedOver(tried: ReadonlyMap<string, number>, now: number, registered: (workerId: string) => boolean): Map<string, number> {
  return new Map([...tried].filter(([id, until]) => until > now && registered(id)));
}

/**
 * How long until a job no worker took is offered again: when the first passed-over worker's backoff
 * ends (it may be the only one), a little after so it has ended. Undefined when none is passed over:
 * then only freed capacity offers it again.
 */
export function retryDelayMs(tried: ReadonlyMap<string, number>, now: number): number | undefined {
  const retryAt = Math.min(...tried.values());
  return Number.isFinite(retryAt) ? Math.max(0, retryAt - now) + 10 : undefined;
}

/** A job as an agent's join sees it. */
export interface JoiningJob {
  ended: boolean;
  room: string;
  identity: string;
  /** A worker accepted it (an offer is not enough). */
  accepted: boolean;
}

/**
 * Why an agent with a token for job `jobId` may not join `room` as `identity`, or undefined when it
 * may: only while its job is live and accepted, in the job's room, as the job's participant.
 */
export function agentJoinRefusal(jobId: string, job: JoiningJob | undefined, room: string | undefined, identity: string | undefined): ApiError | undefined {
  if (!job || job.ended || job.room !== room) {
    return new ApiError('not_found', `agent job '${jobId}' has ended (its room was closed or its dispatch deleted)`);
  }
  if (identity !== job.identity) return new ApiError('permission_denied', `the token's identity is not the participant of agent job '${jobId}'`);
  if (!job.accepted) return new ApiError('failed_precondition', `agent job '${jobId}' is not accepted by a worker (accept the offer before joining)`);
  return undefined;
}

export interface RequestedAgent {
  agentName: string;
  metadata: string;
  attributes: Record<string, string>;
}

/** The agents a roomConfig asks for that the room has no dispatch of yet: named, once per name. */
export function agentsToDispatch(requested: readonly RequestedAgent[], present: Iterable<string>): RequestedAgent[] {
  const seen = new Set(present);
  const out: RequestedAgent[] = [];
  for (const a of requested) {
    if (!a.agentName || seen.has(a.agentName)) continue;
    seen.add(a.agentName);
    out.push(a);
  }
  return out;
}

/** Whether an ended job gets agent_job_ended: every started job does, and one the worker ended itself. */
export function endsWithWebhook(wasStarted: boolean, byGateway: boolean): boolean {
  return wasStarted || !byGateway;
}
