// WebSocket /agent?access_token=<token with the `agent` grant>: agent workers register here and
// take jobs. Every frame is validated (zod); a bad one gets an `error` message and the connection
// stays open. Auth failures close with 4000 + the HTTP status, as /rtc does.
import type { WebSocket } from 'ws';
import { WsEndpoint, heartbeat } from '../../api/wsServer.ts';
import type { TokenVerifier } from '../../auth/tokens.ts';
import { ApiError, permissionDenied, unauthenticated } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { Logger } from '../../logger.ts';
import { closeReason } from '../../signaling/server.ts';
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

const CLOSE_CODE: Partial<Record<string, number>> = { unauthenticated: 4401, permission_denied: 4403 };
const CLIENT_CODES: ReadonlySet<string> = new Set<AgentErrorCode>(['malformed', 'invalid_argument', 'failed_precondition', 'not_found', 'unavailable']);

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

class WorkerConnection {
  readonly #ws: WebSocket;
  readonly #opts: Required<AgentServerOptions>;
  readonly #onGone: () => void;
  #log: Logger;
  #worker: WorkerHandle | undefined;
  #pinger: NodeJS.Timeout | undefined;

  constructor(ws: WebSocket, opts: Required<AgentServerOptions>, onGone: () => void) {
    this.#ws = ws;
    this.#opts = opts;
    this.#onGone = onGone;
    this.#log = opts.log;
    ws.on('error', (err) => this.#log.debug({ err: err.message }, 'agent websocket error'));
  }

  get dispatcher(): AgentDispatcher {
    return this.#opts.dispatcher;
  }

  async start(url: URL): Promise<void> {
    const early: Buffer[] = [];
    const buffer = (data: Buffer, isBinary: boolean) => void (isBinary ? this.#error('malformed', 'binary frames are not part of the protocol; send JSON text') : early.push(data));
    this.#ws.on('message', buffer);
    this.#ws.once('close', () => this.#closed());
    try {
      const token = url.searchParams.get('access_token');
      if (!token) throw unauthenticated('missing access_token query parameter');
      const claims = await this.#opts.verifier.verify(token);
      if (!claims.video?.agent) throw permissionDenied('the agent grant is required to register an agent worker');
      // A token that may also join a room (an agent job's join token, a participant's token) is not
      // a worker credential: leaking one must not let its holder take jobs for every room.
      if (claims.video.roomJoin || claims.video.room) {
        throw permissionDenied('a worker token must not carry roomJoin or room; mint one with only the agent grant');
      }
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : new ApiError('internal', 'agent authentication failed');
      const code = apiErr.code === 'permission_denied' || apiErr.code === 'unauthenticated' ? apiErr.code : 'unavailable';
      this.#send({ type: 'error', code, message: apiErr.message });
      this.#ws.close(CLOSE_CODE[apiErr.code] ?? 4500, closeReason(apiErr.message));
      return;
    }
    this.#ws.off('message', buffer);
    this.#ws.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(data, isBinary));
    this.#pinger = heartbeat(this.#ws, this.#opts.pingIntervalMs, () => this.terminate());
    for (const data of early) this.#onMessage(data, false);
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
    this.#log = this.#opts.log.child({ worker: id, agent: m.agentName });
    this.#send({ type: 'registered', workerId: id, protocolVersion: AGENT_PROTOCOL_VERSION });
    this.dispatcher.addWorker(this.#worker);
  }

  terminate(): void {
    this.#ws.terminate();
  }

  #send(msg: GatewayMessage): void {
    if (this.#ws.readyState === this.#ws.OPEN) this.#ws.send(JSON.stringify(msg));
  }

  #error(code: AgentErrorCode, message: string, jobId?: string): void {
    this.#send({ type: 'error', code, message, ...(jobId ? { jobId } : {}) });
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.#error('malformed', 'binary frames are not part of the protocol; send JSON text');
    if (data.length > MAX_AGENT_MESSAGE_BYTES) return this.#error('malformed', `message larger than ${MAX_AGENT_MESSAGE_BYTES} bytes`);
    let raw: unknown;
    try {
      raw = JSON.parse(data.toString('utf8'));
    } catch {
      return this.#error('malformed', 'message is not valid JSON');
    }
    const envelope = workerEnvelope.safeParse(raw);
    if (!envelope.success) return this.#error('malformed', 'message must be a JSON object {"type": <string>, ...}');
    const type = envelope.data.type;
    if (!Object.hasOwn(workerMessageSchemas, type)) {
      return this.#error('malformed', `unknown message type '${type}' (known: ${Object.keys(workerMessageSchemas).join(', ')})`);
    }
    const parsed = workerMessageSchemas[type as WorkerMessageType].safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return this.#error('invalid_argument', `${type}: ${issue.path.join('.') || 'message'}: ${issue.message}`);
    }
    const jobId = 'jobId' in parsed.data ? parsed.data.jobId : undefined;
    try {
      (HANDLERS[type as WorkerMessageType] as Handler<WorkerMessageType>)(this, parsed.data as WorkerMessageOf<WorkerMessageType>);
    } catch (err) {
      if (err instanceof ApiError && CLIENT_CODES.has(err.code)) return this.#error(err.code as AgentErrorCode, err.message, jobId);
      this.#log.error({ err, type }, 'agent message handling failed');
      this.#error('unavailable', `${type} failed`, jobId);
    }
  }

  #closed(): void {
    clearInterval(this.#pinger);
    this.#onGone();
    if (this.#worker) this.dispatcher.removeWorker(this.#worker.id);
  }
}
