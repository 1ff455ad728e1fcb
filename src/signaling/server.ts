// WebSocket signaling at /rtc?access_token=<join token>[&reconnect=1]. Translates protocol messages
// into calls on the participant; every request is validated (zod) and permission-checked in sfu/.
// A bad frame gets an error response and the connection stays open.
import type { WebSocket } from 'ws';
import { WsEndpoint, heartbeat } from '../api/wsServer.ts';
import type { Claims } from '../auth/grants.ts';
import type { TokenVerifier } from '../auth/tokens.ts';
import { ApiError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Participant, SignalSink } from '../sfu/Participant.ts';
import type { RoomImpl } from '../sfu/Room.ts';
import {
  MAX_REQUEST_BYTES,
  PROTOCOL_VERSION,
  requestEnvelope,
  requestSchemas,
  type ErrorCode,
  type IceServer,
  type LeaveReason,
  type Method,
  type RequestData,
  type ServerEventName,
  type ServerEvents,
  type ServerMessage,
} from './protocol.ts';

export const SIGNALING_PATH = '/rtc';

/** A WebSocket close reason may hold 123 bytes of UTF-8; cut on a character boundary. */
export function closeReason(message: string): string {
  let out = '';
  for (const ch of message) {
    if (Buffer.byteLength(out + ch) > 123) break;
    out += ch;
  }
  return out;
}

/** What signaling needs from the room layer. */
export interface RoomJoiner {
  join(claims: Claims, sink: SignalSink): Promise<{ room: RoomImpl; participant: Participant }>;
  resume(claims: Claims, sink: SignalSink): { room: RoomImpl; participant: Participant } | undefined;
}

export interface SignalingOptions {
  verifier: TokenVerifier;
  rooms: RoomJoiner;
  iceServers: (identity: string) => IceServer[];
  log: Logger;
  /** How long a participant whose socket dropped is kept for a reconnect. */
  reconnectGraceMs?: number;
  pingIntervalMs?: number;
}

/** WebSocket close codes: 4000 + the HTTP status the error would have had. */
const CLOSE_CODE: Partial<Record<string, number>> = {
  unauthenticated: 4401,
  permission_denied: 4403,
  not_found: 4404,
  resource_exhausted: 4429,
  invalid_argument: 4400,
  failed_precondition: 4412,
  unimplemented: 4501,
  unavailable: 4503,
};

const WS_ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'malformed',
  'invalid_argument',
  'not_found',
  'permission_denied',
  'failed_precondition',
  'resource_exhausted',
  'unavailable',
]);

type Handler<M extends Method> = (p: Participant, data: RequestData<M>, room: RoomImpl | undefined) => unknown;

/** One handler per protocol method; the data was validated against its schema already. */
const HANDLERS: { [M in Method]: Handler<M> } = {
  ready: (p, d) => p.ready(d),
  createTransport: (p, d) => p.createTransport(d),
  connectTransport: (p, d) => p.connectTransport(d),
  restartIce: (p, d) => p.restartIce(d),
  publishTrack: (p, d) => p.publishTrack(d),
  unpublishTrack: (p, d) => p.unpublishTrack(d),
  muteTrack: async (p, d) => ({ track: (await p.setTrackMuted(d.trackSid, d.muted)).toJson() }),
  subscribe: (p, d, room) => {
    if (!room?.visibleTrack(p, d.trackSid)) throw new ApiError('not_found', `track '${d.trackSid}' is not published in this room`);
    p.setSubscription(d.trackSid, d.subscribe);
    if (d.subscribe) room?.resubscribe(p);
  },
  resumeConsumer: (p, d) => p.resumeConsumer(d),
  pauseConsumer: (p, d) => p.pauseConsumer(d),
  setPreferredLayers: (p, d) => p.setPreferredLayers(d),
  publishData: (p, d) => p.publishData(d),
  updateMetadata: (p, d) => p.updateMetadata(d),
  ping: () => ({ pong: Date.now() }),
  // Answer first: close() ends the socket.
  leave: (p) => void setImmediate(() => p.close('CLIENT_INITIATED')),
};

export class SignalingServer extends WsEndpoint<Connection> {
  constructor(opts: SignalingOptions) {
    const full: Required<SignalingOptions> = { reconnectGraceMs: 15_000, pingIntervalMs: 10_000, ...opts };
    super('signaling', (ws, onClose) => new Connection(ws, full, onClose), opts.log);
  }
}

class Connection implements SignalSink {
  readonly #ws: WebSocket;
  readonly #opts: Required<SignalingOptions>;
  readonly #onGone: () => void;
  #log: Logger;
  #participant: Participant | undefined;
  #room: RoomImpl | undefined;
  #pinger: NodeJS.Timeout | undefined;
  /** Requests run one at a time, in arrival order, as a client expects (connect before produce). */
  #queue: Promise<void> = Promise.resolve();

  constructor(ws: WebSocket, opts: Required<SignalingOptions>, onGone: () => void) {
    this.#ws = ws;
    this.#opts = opts;
    this.#onGone = onGone;
    this.#log = opts.log;
    ws.on('error', (err) => this.#log.debug({ err: err.message }, 'websocket error'));
  }

  async start(url: URL): Promise<void> {
    // Frames that arrive while joining are handled after the join, in order.
    const early: [Buffer, boolean][] = [];
    const buffer = (data: Buffer, isBinary: boolean) => early.push([data, isBinary]);
    this.#ws.on('message', buffer);
    this.#ws.once('close', () => this.#closed());
    let claims: Claims;
    try {
      const token = url.searchParams.get('access_token');
      if (!token) throw new ApiError('unauthenticated', 'missing access_token query parameter');
      claims = await this.#opts.verifier.verify(token);
      let resumed: { room: RoomImpl; participant: Participant } | undefined;
      if (url.searchParams.get('reconnect') === '1') {
        // No silent fresh join: the room or participant may be gone on purpose (deleted, removed).
        resumed = this.#opts.rooms.resume(claims, this);
        if (!resumed) throw new ApiError('not_found', 'no session to resume; join again without reconnect=1');
      }
      const { room, participant } = resumed ?? (await this.#opts.rooms.join(claims, this));
      if (this.#ws.readyState !== this.#ws.OPEN) {
        // The socket closed while we were joining: hold the session for a resume, as after a drop.
        participant.detach(this, this.#opts.reconnectGraceMs);
        return;
      }
      this.#participant = participant;
      this.#room = room;
      this.#log = this.#opts.log.child({ room: room.name, participant: participant.identity });
      const snapshot = room.snapshotFor(participant);
      this.send('joined', {
        protocolVersion: PROTOCOL_VERSION,
        room: snapshot.room.toJson() as Record<string, unknown>,
        participant: participant.info().toJson() as Record<string, unknown>,
        participants: snapshot.participants.map((p) => p.toJson() as Record<string, unknown>),
        routerRtpCapabilities: room.rtpCapabilities as unknown as Record<string, unknown>,
        iceServers: this.#opts.iceServers(participant.identity),
        activeSpeakers: snapshot.activeSpeakers,
        ...(resumed ? participant.offers() : { consumers: [], dataConsumers: [] }),
        resumed: resumed !== undefined,
      });
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : new ApiError('internal', 'join failed');
      if (!(err instanceof ApiError)) this.#log.error({ err }, 'join failed');
      this.#write({ id: null, ok: false, error: { code: apiErr.code as ErrorCode, message: apiErr.message } });
      this.#ws.close(CLOSE_CODE[apiErr.code] ?? 4500, closeReason(apiErr.message));
      return;
    }
    this.#ws.off('message', buffer);
    this.#ws.on('message', (data: Buffer, isBinary: boolean) => this.#enqueue(data, isBinary));
    this.#pinger = heartbeat(this.#ws, this.#opts.pingIntervalMs, () => this.terminate());
    for (const [data, isBinary] of early) this.#enqueue(data, isBinary);
  }

  send<K extends ServerEventName>(event: K, data: ServerEvents[K]): void {
    this.#write({ event, data } as ServerMessage);
  }

  /** The participant left (or was replaced/removed): say why and end the socket. */
  close(reason: LeaveReason): void {
    this.send('left', { reason });
    this.#participant = undefined;
    this.#ws.close(1000, reason);
  }

  superseded(): void {
    this.#participant = undefined;
    this.#ws.close(4409, 'session resumed on another connection');
  }

  terminate(): void {
    this.#ws.terminate();
  }

  #write(msg: ServerMessage): void {
    if (this.#ws.readyState === this.#ws.OPEN) this.#ws.send(JSON.stringify(msg));
  }

  #fail(id: number | null, code: ErrorCode, message: string): void {
    this.#write({ id, ok: false, error: { code, message } });
  }

  #enqueue(data: Buffer, isBinary: boolean): void {
    this.#queue = this.#queue
      .then(() => this.#onMessage(data, isBinary))
      .catch((err: unknown) => this.#log.error({ err }, 'signaling message handling failed'));
  }

  async #onMessage(data: Buffer, isBinary: boolean): Promise<void> {
    const p = this.#participant;
    if (!p) return;
    if (isBinary) return this.#fail(null, 'malformed', 'binary frames are not part of the protocol; send JSON text');
    if (data.length > MAX_REQUEST_BYTES) return this.#fail(null, 'malformed', `request larger than ${MAX_REQUEST_BYTES} bytes`);
    let raw: unknown;
    try {
      raw = JSON.parse(data.toString('utf8'));
    } catch {
      return this.#fail(null, 'malformed', 'request is not valid JSON');
    }
    const envelope = requestEnvelope.safeParse(raw);
    if (!envelope.success) {
      const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : null;
      return this.#fail(id, 'malformed', `request must be {"id": <integer>, "method": <string>, "data": {...}}`);
    }
    const { id, method } = envelope.data;
    if (!Object.hasOwn(requestSchemas, method)) return this.#fail(id, 'malformed', `unknown method '${method}'`);
    const parsed = requestSchemas[method as Method].safeParse(envelope.data.data ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return this.#fail(id, 'invalid_argument', `${method}: ${issue.path.join('.') || 'data'}: ${issue.message}`);
    }
    try {
      const result = await this.#dispatch(p, method as Method, parsed.data);
      this.#write({ id, ok: true, data: result ?? {} });
    } catch (err) {
      if (err instanceof ApiError && WS_ERROR_CODES.has(err.code)) return this.#fail(id, err.code as ErrorCode, err.message);
      this.#log.error({ err, method }, 'signaling request failed');
      this.#fail(id, 'internal', `${method} failed`);
    }
  }

  #dispatch(p: Participant, method: Method, data: unknown): Promise<unknown> | unknown {
    return (HANDLERS[method] as Handler<Method>)(p, data as RequestData<Method>, this.#room);
  }

  #closed(): void {
    clearInterval(this.#pinger);
    this.#onGone();
    const p = this.#participant;
    // Keep the session for a reconnect (transports and tracks stay up meanwhile).
    if (p && !p.closed) p.detach(this, this.#opts.reconnectGraceMs);
  }
}
