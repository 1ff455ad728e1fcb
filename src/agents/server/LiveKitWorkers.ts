// LiveKit's agent worker protocol at /agent (livekit_agent.proto: binary protobuf WorkerMessage /
// ServerMessage, the worker's token as `Authorization: Bearer`), beside roomgate's own JSON one on
// the same path, so stock @livekit/agents workers take jobs from the same AgentDispatcher: its
// automatic, explicit and roomConfig dispatches, offer timeouts and re-offers when a worker dies.
//
//   worker → server: register, availability (the answer to an offer), update_worker (load, status),
//                    update_job, ping
//   server → worker: register (first), availability (an offer), assignment (with the room token),
//                    termination, pong
//
// The dispatcher's offer becomes an AvailabilityRequest; an available answer accepts it and is
// followed by the assignment, whose token is minted as LiveKit's server does: roomJoin, agent, kind
// AGENT, the worker's allowed permissions and the identity, name, metadata and attributes it
// answered. A stock worker never reports a job's end: the job ends when its participant leaves.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  AvailabilityRequest,
  JobAssignment,
  JobTermination,
  JobType,
  ParticipantPermission,
  RegisterWorkerResponse,
  ServerInfo,
  ServerInfo_Edition,
  ServerMessage,
  WorkerMessage,
  WorkerPong,
  WorkerStatus,
  JobStatus,
  type AvailabilityResponse,
  type RegisterWorkerRequest,
} from '@livekit/protocol';
import type { WebSocket } from 'ws';
import { AuthenticatedSocket, wsCloseCode, type Refusal } from '../../api/authenticatedSocket.ts';
import { WsEndpoint } from '../../api/wsServer.ts';
import type { Claims } from '../../auth/grants.ts';
import { grantFromPermission } from '../../auth/join.ts';
import type { MintOptions } from '../../auth/tokens.ts';
import { ApiError, permissionDenied } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { Logger } from '../../logger.ts';
import { AGENT_JOB_ATTRIBUTE, AGENT_NAME_ATTRIBUTE, MAX_AGENT_MESSAGE_BYTES, type GatewayMessage } from '../protocol.ts';
import type { AgentDispatcher } from './AgentDispatcher.ts';

export interface LiveKitWorkersOptions {
  verifier: { verify(token: string): Promise<Claims> };
  dispatcher: AgentDispatcher;
  /** Signs a room token with the gateway's service key. */
  mint(opts: MintOptions): Promise<string>;
  nodeId: string;
  log: Logger;
  pingIntervalMs?: number;
}

/**
 * Whether an upgrade at /agent is a LiveKit worker: its frameworks send the token only as
 * `Authorization: Bearer`; roomgate's worker sends `?access_token=`.
 */
export function isLiveKitWorkerUpgrade(url: URL, authorization: string | undefined): boolean {
  return !url.searchParams.has('access_token') && /^Bearer\s+\S/i.test(authorization ?? '');
}

/** How long an agent's room token lives: it joins right away and resumes within the session. */
const JOB_TOKEN_TTL_S = 600;

export class LiveKitWorkers extends WsEndpoint<LiveKitWorkerConnection> {
  readonly #opts: Required<LiveKitWorkersOptions>;

  constructor(opts: LiveKitWorkersOptions) {
    const full: Required<LiveKitWorkersOptions> = { pingIntervalMs: 10_000, ...opts };
    super('livekit agent worker', (ws, onClose) => new LiveKitWorkerConnection(ws, full, onClose), opts.log);
    this.#opts = full;
  }

  /** A bad or missing token is refused at the upgrade with 401, as LiveKit's server does. */
  override handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void {
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const refuse = (status: string) => socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    if (!token) return void refuse('401 Unauthorized');
    this.#opts.verifier.verify(token).then(
      () => {
        url.searchParams.set('access_token', token);
        super.handleUpgrade(req, socket, head, url);
      },
      () => refuse('401 Unauthorized'),
    );
  }
}

interface Registered {
  id: string;
  agentName: string;
  permissions: ParticipantPermission;
  full: boolean;
}

class LiveKitWorkerConnection extends AuthenticatedSocket {
  readonly #opts: Required<LiveKitWorkersOptions>;
  #worker: Registered | undefined;
  /** Offers sent and not yet answered, by job id: what the assignment needs. */
  readonly #offers = new Set<string>();
  // handleUpgrade put the header's token in the query.
  protected readonly missingToken = 'missing Authorization: Bearer token';

  constructor(ws: WebSocket, opts: Required<LiveKitWorkersOptions>, onGone: () => void) {
    super(ws, opts, onGone);
    this.#opts = opts;
  }

  protected override grant(claims: Claims): void {
    if (!claims.video?.agent) throw permissionDenied('the agent grant is required to register an agent worker');
    // A room token (an agent's own, a participant's) must not take jobs for every room.
    if (claims.video.roomJoin || claims.video.room) throw permissionDenied('a worker token must not carry roomJoin or room');
  }

  /** Nothing to set up before the worker's register message. */
  protected open(): boolean {
    return true;
  }

  /** The protocol has no error frame: the close code and reason say why. */
  protected refused(err: unknown): Refusal {
    const apiErr = err instanceof ApiError ? err : new ApiError('unauthenticated', 'agent authentication failed');
    return { code: wsCloseCode(apiErr.code), reason: apiErr.message };
  }

  #send(message: ServerMessage['message']): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(new ServerMessage({ message }).toBinary());
  }

  /**
   * One frame. The protocol has no error message: what cannot be read or done is logged and
   * dropped (the worker's own timeouts see it), and the connection stays up.
   */
  protected receive(data: Buffer, isBinary: boolean): void {
    let msg: WorkerMessage;
    try {
      if (!isBinary) throw new Error('a text frame (LiveKit workers send binary protobuf)');
      if (data.length > MAX_AGENT_MESSAGE_BYTES) throw new Error(`larger than ${MAX_AGENT_MESSAGE_BYTES} bytes`);
      msg = WorkerMessage.fromBinary(data);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'unreadable LiveKit worker message dropped');
      return;
    }
    try {
      this.#handle(msg.message);
    } catch (err) {
      if (err instanceof ApiError) this.log.warn({ err: err.message, message: msg.message.case }, 'LiveKit worker message refused');
      else this.log.error({ err, message: msg.message.case }, 'LiveKit worker message failed');
    }
  }

  #handle(message: WorkerMessage['message']): void {
    switch (message.case) {
      case 'register':
        return this.#register(message.value);
      case 'availability':
        return this.#availability(this.#registered(), message.value);
      case 'updateWorker': {
        const w = this.#registered();
        const v = message.value;
        if (v.status !== undefined) w.full = v.status === WorkerStatus.WS_FULL;
        if (Number.isFinite(v.load)) this.#opts.dispatcher.setLoad(w.id, Math.min(1, Math.max(0, v.load)));
        return;
      }
      case 'updateJob': {
        const w = this.#registered();
        const status = message.value.status;
        const mapped = status === JobStatus.JS_RUNNING ? 'running' : status === JobStatus.JS_SUCCESS ? 'done' : status === JobStatus.JS_FAILED ? 'failed' : undefined;
        if (mapped) this.#opts.dispatcher.update(w.id, message.value.jobId, mapped, message.value.error || undefined);
        return;
      }
      case 'ping':
        this.#send({ case: 'pong', value: new WorkerPong({ lastTimestamp: message.value.timestamp, timestamp: BigInt(Date.now()) }) });
        return;
      case 'simulateJob':
      case 'migrateJob':
        throw new ApiError('unimplemented', `${message.case} is not supported by this server`);
      default:
        throw new ApiError('malformed', 'worker message carries no known message');
    }
  }

  #registered(): Registered {
    if (!this.#worker) throw new ApiError('failed_precondition', 'register first');
    return this.#worker;
  }

  #register(req: RegisterWorkerRequest): void {
    if (this.#worker) throw new ApiError('failed_precondition', `already registered as worker ${this.#worker.id}`);
    if (req.type !== JobType.JT_ROOM) {
      // Publisher and participant jobs need a dispatch per participant, which the dispatcher does not make.
      throw new ApiError('unimplemented', `job type ${JobType[req.type] ?? req.type} is not supported (JT_ROOM only)`);
    }
    if (req.agentName.length > 64) throw new ApiError('invalid_argument', 'agent_name is longer than 64 characters');
    const id = newId('AW_');
    const worker: Registered = { id, agentName: req.agentName, permissions: req.allowedPermissions ?? new ParticipantPermission({ canSubscribe: true, canPublish: true, canPublishData: true }), full: false };
    this.#worker = worker;
    this.log = this.#opts.log.child({ worker: id, agent: req.agentName || '(automatic)', version: req.version });
    this.#send({
      case: 'register',
      value: new RegisterWorkerResponse({
        workerId: id,
        serverInfo: new ServerInfo({ edition: ServerInfo_Edition.Standard, version: '1.9.0', protocol: 17, nodeId: this.#opts.nodeId }),
      }),
    });
    this.#opts.dispatcher.addWorker({
      id,
      agentName: req.agentName,
      // LiveKit workers report load and availability rather than a job count.
      capacity: 1000,
      // As LiveKit: a worker without an agent name is dispatched to every new room.
      automatic: req.agentName === '',
      full: () => worker.full,
      endsWithParticipant: true,
      send: (msg) => this.#fromDispatcher(msg),
    });
  }

  #fromDispatcher(msg: GatewayMessage): void {
    switch (msg.type) {
      case 'offer': {
        const job = this.#opts.dispatcher.job(msg.job.id);
        if (!job) return;
        this.#offers.add(job.id);
        this.#send({ case: 'availability', value: new AvailabilityRequest({ job, resuming: msg.job.attempt > 1 }) });
        return;
      }
      case 'terminate':
        this.#offers.delete(msg.jobId);
        this.#send({ case: 'termination', value: new JobTermination({ jobId: msg.jobId }) });
        return;
      case 'error':
        this.log.warn({ code: msg.code, job: msg.jobId, err: msg.message }, 'agent job error');
        return;
      case 'registered':
        return;
    }
  }

  #availability(worker: Registered, answer: AvailabilityResponse): void {
    const jobId = answer.jobId;
    if (!this.#offers.delete(jobId)) throw new ApiError('not_found', `job '${jobId}' is not offered to this worker`);
    const d = this.#opts.dispatcher;
    if (!answer.available) {
      d.reject(worker.id, jobId, answer.terminate ? 'worker terminating' : 'worker not available');
      return;
    }
    const identity = answer.participantIdentity || undefined;
    const taken = d.accept(worker.id, jobId, identity);
    const job = d.job(jobId)!;
    this.#opts
      .mint({
        identity: taken.identity,
        name: answer.participantName || job.agentName || taken.identity,
        metadata: answer.participantMetadata,
        attributes: { ...answer.participantAttributes, [AGENT_JOB_ATTRIBUTE]: jobId, [AGENT_NAME_ATTRIBUTE]: job.agentName },
        kind: 'agent',
        video: {
          roomJoin: true,
          room: taken.room,
          agent: true,
          ...grantFromPermission(worker.permissions),
        },
        ttl: JOB_TOKEN_TTL_S,
      })
      .then((token) => {
        this.#send({ case: 'assignment', value: new JobAssignment({ job: d.job(jobId) ?? job, token }) });
        // A stock worker never reports running: the job runs from its assignment.
        d.update(worker.id, jobId, 'running');
      })
      .catch((err: unknown) => this.log.error({ err, job: jobId }, 'could not assign the agent job'));
  }

  protected closed(): void {
    if (this.#worker) this.#opts.dispatcher.removeWorker(this.#worker.id);
  }
}
