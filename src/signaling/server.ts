// WebSocket signaling at /rtc?access_token=<join token>[&reconnect=1]. Translates protocol messages
// into calls on the participant; every request is validated (zod) and permission-checked in sfu/.
// A bad frame gets an error response and the connection stays open.
import type { WebSocket } from 'ws';
import { JsonWsConnection, WsEndpoint, type FrameRef, type JsonWsProtocol } from '../api/wsServer.ts';
import type { Claims } from '../auth/grants.ts';
import type { TokenVerifier } from '../auth/tokens.ts';
import { ApiError, type TwirpCode } from '../errors.ts';
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

/** /rtc frames: `{"id", "method", "data"}` requests, each answered with its id. */
const SIGNALING_PROTOCOL: JsonWsProtocol<Method> = {
  noun: 'request',
  maxBytes: MAX_REQUEST_BYTES,
  envelope: (raw) => {
    const envelope = requestEnvelope.safeParse(raw);
    if (!envelope.success) {
      const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : undefined;
      return { error: `request must be {"id": <integer>, "method": <string>, "data": {...}}`, ref: id };
    }
    return { name: envelope.data.method, ref: envelope.data.id, payload: envelope.data.data ?? {} };
  },
  schemas: requestSchemas,
  unknownName: (method) => `unknown method '${method}'`,
  root: 'data',
  clientCodes: new Set<ErrorCode>(['malformed', 'invalid_argument', 'not_found', 'permission_denied', 'failed_precondition', 'resource_exhausted', 'unavailable']),
  failedCode: 'internal',
};

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

class Connection extends JsonWsConnection<Method> implements SignalSink {
  readonly #opts: Required<SignalingOptions>;
  #participant: Participant | undefined;
  #room: RoomImpl | undefined;
  protected readonly openFailure = 'join failed';

  constructor(ws: WebSocket, opts: Required<SignalingOptions>, onGone: () => void) {
    super(ws, SIGNALING_PROTOCOL, opts, onGone);
    this.#opts = opts;
  }

  protected async open(claims: Claims, url: URL): Promise<boolean> {
    let resumed: { room: RoomImpl; participant: Participant } | undefined;
    if (url.searchParams.get('reconnect') === '1') {
      // No silent fresh join: the room or participant may be gone on purpose (deleted, removed).
      resumed = this.#opts.rooms.resume(claims, this);
      if (!resumed) throw new ApiError('not_found', 'no session to resume; join again without reconnect=1');
    }
    const { room, participant } = resumed ?? (await this.#opts.rooms.join(claims, this));
    if (this.ws.readyState !== this.ws.OPEN) {
      // The socket closed while we were joining: hold the session for a resume, as after a drop.
      participant.detach(this, this.#opts.reconnectGraceMs);
      return false;
    }
    this.#participant = participant;
    this.#room = room;
    this.log = this.#opts.log.child({ room: room.name, participant: participant.identity });
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
    return true;
  }

  protected override get serving(): boolean {
    return this.#participant !== undefined;
  }

  send<K extends ServerEventName>(event: K, data: ServerEvents[K]): void {
    this.#write({ event, data } as ServerMessage);
  }

  /** The participant left (or was replaced/removed): say why and end the socket. */
  close(reason: LeaveReason): void {
    this.send('left', { reason });
    this.#participant = undefined;
    this.ws.close(1000, reason);
  }

  superseded(): void {
    this.#participant = undefined;
    this.ws.close(4409, 'session resumed on another connection');
  }

  protected sendError(code: TwirpCode, message: string, ref: FrameRef): void {
    this.#write({ id: typeof ref === 'number' ? ref : null, ok: false, error: { code: code as ErrorCode, message } });
  }

  protected async handle(method: Method, data: unknown, ref: FrameRef): Promise<void> {
    const result = await (HANDLERS[method] as Handler<Method>)(this.#participant!, data as RequestData<Method>, this.#room);
    this.#write({ id: ref as number, ok: true, data: result ?? {} });
  }

  #write(msg: ServerMessage): void {
    this.write(msg);
  }

  protected closed(): void {
    const p = this.#participant;
    // Keep the session for a reconnect (transports and tracks stay up meanwhile).
    if (p && !p.closed) p.detach(this, this.#opts.reconnectGraceMs);
  }
}
