// WebSocket /agent?access_token=<token with the `agent` grant>: agent workers register here and
// take jobs. Every frame is validated (zod); a bad one gets an `error` message and the connection
// stays open. Auth failures close with 4000 + the HTTP status, as /rtc does.
import type { WebSocket } from 'ws';
import { JsonWsConnection, WsEndpoint, type FrameRef, type JsonWsProtocol } from '../../api/wsServer.ts';
import type { Claims } from '../../auth/grants.ts';
import type { TokenVerifier } from '../../auth/tokens.ts';
import { ApiError, permissionDenied, type TwirpCode } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { Logger } from '../../logger.ts';
import {
  AGENT_PROTOCOL_VERSION,
  MAX_AGENT_MESSAGE_BYTES,
  workerEnvelope,
  workerMessageSchemas,
  type AgentErrorCode,
  type GatewayMessage,
  type WorkerMessageOf,
  type WorkerMessageType,
} from '../protocol.ts';
import type { AgentDispatcher, WorkerHandle } from './AgentDispatcher.ts';

export interface AgentServerOptions {
  verifier: TokenVerifier;
  dispatcher: AgentDispatcher;
  log: Logger;
  pingIntervalMs?: number;
}

/** /agent frames: `{"type", ...}` messages; an error names the job it concerns. */
const AGENT_PROTOCOL: JsonWsProtocol<WorkerMessageType> = {
  noun: 'message',
  maxBytes: MAX_AGENT_MESSAGE_BYTES,
  envelope: (raw) => {
    const envelope = workerEnvelope.safeParse(raw);
    if (!envelope.success) return { error: 'message must be a JSON object {"type": <string>, ...}', ref: undefined };
    return { name: envelope.data.type, ref: undefined, payload: raw };
  },
  schemas: workerMessageSchemas,
  unknownName: (type) => `unknown message type '${type}' (known: ${Object.keys(workerMessageSchemas).join(', ')})`,
  root: 'message',
  refOf: (m) => (typeof m === 'object' && m !== null && 'jobId' in m && typeof m.jobId === 'string' ? m.jobId : undefined),
  clientCodes: new Set<AgentErrorCode>(['malformed', 'invalid_argument', 'failed_precondition', 'not_found', 'unavailable']),
  failedCode: 'unavailable',
};

/** Codes an agent worker understands; any other becomes `unavailable`. */
const WIRE_CODES: ReadonlySet<string> = new Set<AgentErrorCode>(['malformed', 'invalid_argument', 'failed_precondition', 'not_found', 'unavailable', 'unauthenticated', 'permission_denied']);

type Handler<K extends WorkerMessageType> = (conn: WorkerConnection, msg: WorkerMessageOf<K>) => void;

const HANDLERS: { [K in WorkerMessageType]: Handler<K> } = {
  register: (c, m) => c.register(m),
  load: (c, m) => c.dispatcher.setLoad(c.registered().id, m.load),
  accept: (c, m) => c.dispatcher.accept(c.registered().id, m.jobId),
  reject: (c, m) => c.dispatcher.reject(c.registered().id, m.jobId, m.reason),
  update: (c, m) => c.dispatcher.update(c.registered().id, m.jobId, m.status, m.error),
};

export class AgentServer extends WsEndpoint<WorkerConnection> {
  constructor(opts: AgentServerOptions) {
    const full: Required<AgentServerOptions> = { pingIntervalMs: 10_000, ...opts };
    super('agent', (ws, onClose) => new WorkerConnection(ws, full, onClose), opts.log);
  }
}

class WorkerConnection extends JsonWsConnection<WorkerMessageType> {
  readonly #opts: Required<AgentServerOptions>;
  #worker: WorkerHandle | undefined;
  protected readonly openFailure = 'agent authentication failed';

  constructor(ws: WebSocket, opts: Required<AgentServerOptions>, onGone: () => void) {
    super(ws, AGENT_PROTOCOL, opts, onGone);
    this.#opts = opts;
  }

  get dispatcher(): AgentDispatcher {
    return this.#opts.dispatcher;
  }

  protected override grant(claims: Claims): void {
    if (!claims.video?.agent) throw permissionDenied('the agent grant is required to register an agent worker');
    // A token that may also join a room (an agent job's join token, a participant's token) is not
    // a worker credential: leaking one must not let its holder take jobs for every room.
    if (claims.video.roomJoin || claims.video.room) {
      throw permissionDenied('a worker token must not carry roomJoin or room; mint one with only the agent grant');
    }
  }

  protected open(): boolean {
    return true;
  }

  registered(): WorkerHandle {
    if (!this.#worker) throw new ApiError('failed_precondition', 'register first: {"type":"register","agentName":...}');
    return this.#worker;
  }

  register(m: WorkerMessageOf<'register'>): void {
    if (this.#worker) throw new ApiError('failed_precondition', `already registered as worker ${this.#worker.id}; open another connection for another agent`);
    const id = newId('AW_');
    this.#worker = {
      id,
      agentName: m.agentName,
      capacity: m.capacity,
      automatic: m.automatic,
      send: (msg) => this.#send(msg),
    };
    this.log = this.#opts.log.child({ worker: id, agent: m.agentName });
    this.#send({ type: 'registered', workerId: id, protocolVersion: AGENT_PROTOCOL_VERSION });
    this.dispatcher.addWorker(this.#worker);
  }

  #send(msg: GatewayMessage): void {
    this.write(msg);
  }

  protected sendError(code: TwirpCode, message: string, jobId: FrameRef): void {
    const wire = (WIRE_CODES.has(code) ? code : 'unavailable') as AgentErrorCode;
    this.#send({ type: 'error', code: wire, message, ...(typeof jobId === 'string' ? { jobId } : {}) });
  }

  protected handle(type: WorkerMessageType, msg: unknown): void {
    (HANDLERS[type] as Handler<WorkerMessageType>)(this, msg as WorkerMessageOf<WorkerMessageType>);
  }

  protected closed(): void {
    if (this.#worker) this.dispatcher.removeWorker(this.#worker.id);
  }
}
