// The agent worker protocol on WebSocket /agent?access_token=<token with the `agent` grant>: JSON
// text frames `{type, ...}` both ways. Shared by the gateway (src/agents/server/) and the SDK worker.
//
//   worker → gateway: register, load, accept, reject, update
//   gateway → worker: registered, offer, terminate, error
//
// A job is offered to one worker at a time; `accept` takes it, `reject` (or silence past the offer
// timeout) sends it to another worker. The accepted job carries a join token for the agent's
// participant; the worker reports `running`, then `done` or `failed`.
import { z } from 'zod';

export const AGENT_PATH = '/agent';
export const AGENT_PROTOCOL_VERSION = 1;
export const MAX_AGENT_MESSAGE_BYTES = 64 * 1024;

const id = z.string().min(1).max(64);
const agentName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1-64)');

export const workerMessageSchemas = {
  register: z.strictObject({
    type: z.literal('register'),
    agentName,
    /** Jobs this worker runs at once; offers beyond it are not made. */
    capacity: z.int().min(1).max(1000).default(1),
    /** Every new room gets a job for this agent name when true; otherwise only explicit dispatch. */
    automatic: z.boolean().default(false),
    version: z.string().max(64).optional(),
  }),
  /** 0 (idle) to 1 (full): the gateway offers new jobs to the least loaded worker. */
  load: z.strictObject({ type: z.literal('load'), load: z.number().min(0).max(1) }),
  accept: z.strictObject({ type: z.literal('accept'), jobId: id }),
  reject: z.strictObject({ type: z.literal('reject'), jobId: id, reason: z.string().max(500).optional() }),
  update: z.strictObject({
    type: z.literal('update'),
    jobId: id,
    status: z.enum(['running', 'done', 'failed']),
    error: z.string().max(2000).optional(),
  }),
} as const;

export type WorkerMessageType = keyof typeof workerMessageSchemas;
export type WorkerMessage = { [K in WorkerMessageType]: z.infer<(typeof workerMessageSchemas)[K]> }[WorkerMessageType];
export type WorkerMessageOf<K extends WorkerMessageType> = z.infer<(typeof workerMessageSchemas)[K]>;

export const workerEnvelope = z.looseObject({ type: z.string() });

export type AgentErrorCode =
  | 'malformed'
  | 'invalid_argument'
  | 'failed_precondition'
  | 'not_found'
  | 'unavailable'
  | 'unauthenticated'
  | 'permission_denied';

/** What a worker learns about a job (the same for an offer and after accepting it). */
export interface JobDescription {
  id: string;
  dispatchId: string;
  agentName: string;
  /** Metadata of the dispatch (CreateDispatch, roomConfig.agents), passed through untouched. */
  metadata: string;
  room: { name: string; sid: string };
  /** Identity the agent joins with; stays the same when the job moves to another worker. */
  participantIdentity: string;
  /** Join token for that identity (kind "agent"), minted by the gateway. */
  token: string;
  /** Which attempt this is (1 on the first offer; more after a worker died). */
  attempt: number;
}

export type GatewayMessage =
  | { type: 'registered'; workerId: string; protocolVersion: number }
  | { type: 'offer'; job: JobDescription }
  | { type: 'terminate'; jobId: string; reason: string }
  | { type: 'error'; code: AgentErrorCode; message: string; jobId?: string };

/** Participant attribute naming the job an agent participant runs for. */
export const AGENT_JOB_ATTRIBUTE = 'lk.agent.job';
export const AGENT_NAME_ATTRIBUTE = 'lk.agent.name';
