// The WebSocket endpoints' common part (/rtc for participants and LiveKit clients, /agent for agent
// workers): upgrade, track the connections, close them all on shutdown. JsonWsConnection is the one
// connection base of the JSON protocols (/rtc, /agent): frames that arrive before the token is
// checked wait their turn, the token is checked, a refusal closes with 4000 + the HTTP status of the
// error's code, and each frame goes parse → envelope → zod → handler, one at a time, in order.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ZodType } from 'zod';
import { authorize } from '../auth/authorize.ts';
import type { Claims } from '../auth/grants.ts';
import { ApiError, TWIRP_STATUS, type TwirpCode } from '../errors.ts';
import type { Logger } from '../logger.ts';

export interface WsConnection {
  /** Authenticates and starts serving; a rejection is logged and the socket terminated. */
  start(url: URL): Promise<void>;
  terminate(): void;
}

export class WsEndpoint<C extends WsConnection> {
  // maxPayload above the protocols' own request limits, so an oversized request gets an answer
  // instead of a dropped socket.
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024, perMessageDeflate: false });
  readonly #connections = new Set<C>();
  readonly #create: (ws: WebSocket, onClose: () => void) => C;
  readonly #log: Logger;
  readonly #what: string;
  #closing: Promise<void> | undefined;

  constructor(what: string, create: (ws: WebSocket, onClose: () => void) => C, log: Logger) {
    this.#what = what;
    this.#create = create;
    this.#log = log;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = this.#create(ws, () => this.#connections.delete(conn));
      this.#connections.add(conn);
      conn.start(url).catch((err: unknown) => {
        this.#log.error({ err }, `${this.#what} connection failed`);
        conn.terminate();
      });
    });
  }

  /** Ends every connection and stops taking upgrades. Idempotent: later calls get the first call's promise. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      for (const c of this.#connections) c.terminate();
      // With noServer there is no listener to wait for; the callback only says the server stopped.
      this.#wss.close(() => resolve());
    });
    return this.#closing;
  }
}

/** Pings every `intervalMs`; a peer that has not answered the previous ping is declared dead. */
export function heartbeat(ws: WebSocket, intervalMs: number, onDead: () => void): NodeJS.Timeout {
  let alive = true;
  ws.on('pong', () => (alive = true));
  return setInterval(() => {
    if (!alive) return onDead();
    alive = false;
    ws.ping();
  }, intervalMs);
}

/** A WebSocket close reason may hold 123 bytes of UTF-8; cut on a character boundary. */
export function closeReason(message: string): string {
  let out = '';
  for (const ch of message) {
    if (Buffer.byteLength(out + ch) > 123) break;
    out += ch;
  }
  return out;
}

/** The close code of a connection refused with this error: 4000 + the HTTP status of its code (4401, 4403, 4404…). */
export function wsCloseCode(code: TwirpCode): number {
  return 4000 + TWIRP_STATUS[code];
}

/** What a frame refers to, echoed in its error: /rtc's request id, /agent's job id. */
export type FrameRef = number | string | undefined;

/** One JSON protocol as its connections read it. */
export interface JsonWsProtocol<Name extends string> {
  /** What a frame is called in error messages ("request", "message"). */
  noun: string;
  maxBytes: number;
  /** The frame's handler name, its reference and the payload its schema checks; or why it is no frame. */
  envelope(raw: unknown): { name: string; ref: FrameRef; payload: unknown } | { error: string; ref: FrameRef };
  schemas: Record<Name, ZodType>;
  /** The detail for a name with no schema. */
  unknownName(name: string): string;
  /** How a schema issue at the payload's root is named ("data", "message"). */
  root: string;
  /** The reference of a validated frame, when its payload carries one (an agent's jobId). */
  refOf?(payload: unknown): FrameRef;
  /** Error codes a handler's ApiError keeps on the wire; any other failure is logged and sent as `failedCode`. */
  clientCodes: ReadonlySet<string>;
  failedCode: TwirpCode;
}

export interface JsonWsDeps {
  verifier: { verify(token: string): Promise<Claims> };
  pingIntervalMs: number;
  log: Logger;
}

/**
 * A connection of a JSON protocol. The subclass says what an accepted token opens (`open`), how an
 * error frame looks (`sendError`) and what each validated frame does (`handle`).
 */
export abstract class JsonWsConnection<Name extends string> implements WsConnection {
  protected readonly ws: WebSocket;
  protected log: Logger;
  readonly #deps: JsonWsDeps;
  readonly #protocol: JsonWsProtocol<Name>;
  readonly #onGone: () => void;
  #pinger: NodeJS.Timeout | undefined;
  /** Frames run one at a time, in arrival order, as a client expects (connect before produce). */
  #queue: Promise<void> = Promise.resolve();

  constructor(ws: WebSocket, protocol: JsonWsProtocol<Name>, deps: JsonWsDeps, onGone: () => void) {
    this.ws = ws;
    this.#protocol = protocol;
    this.#deps = deps;
    this.#onGone = onGone;
    this.log = deps.log;
    ws.on('error', (err) => this.log.debug({ err: err.message }, 'websocket error'));
  }

  /** The grant this endpoint needs (permission_denied otherwise); a join's grants are checked where it joins. */
  protected grant(_claims: Claims): void {}
  /** Sets the connection up for verified claims; false when the socket went meanwhile (nothing more to serve). */
  protected abstract open(claims: Claims, url: URL): Promise<boolean> | boolean;
  /** The error a refused connection gets before it is closed, when it threw something other than an ApiError. */
  protected abstract readonly openFailure: string;
  protected abstract sendError(code: TwirpCode, message: string, ref: FrameRef): void;
  /** Runs a validated frame; an ApiError it throws is answered with `sendError`. */
  protected abstract handle(name: Name, payload: unknown, ref: FrameRef): unknown;
  /** The socket closed: release what `open` took. */
  protected abstract closed(): void;
  /** False once the connection no longer serves frames (its participant left). */
  protected get serving(): boolean {
    return true;
  }

  async start(url: URL): Promise<void> {
    // Frames that arrive while the token is checked are handled after it, in order.
    const early: [Buffer, boolean][] = [];
    const buffer = (data: Buffer, isBinary: boolean) => early.push([data, isBinary]);
    this.ws.on('message', buffer);
    this.ws.once('close', () => {
      clearInterval(this.#pinger);
      this.#onGone();
      this.closed();
    });
    try {
      const claims = await authorize(this.#deps.verifier, url.searchParams.get('access_token'), {
        missing: 'missing access_token query parameter',
        grant: (c) => this.grant(c),
      });
      if (!(await this.open(claims, url))) return;
    } catch (err) {
      if (!(err instanceof ApiError)) this.log.error({ err }, this.openFailure);
      const apiErr = err instanceof ApiError ? err : new ApiError('internal', this.openFailure);
      this.sendError(apiErr.code, apiErr.message, undefined);
      this.ws.close(wsCloseCode(apiErr.code), closeReason(apiErr.message));
      return;
    }
    this.ws.off('message', buffer);
    this.ws.on('message', (data: Buffer, isBinary: boolean) => this.#enqueue(data, isBinary));
    this.#pinger = heartbeat(this.ws, this.#deps.pingIntervalMs, () => this.terminate());
    for (const [data, isBinary] of early) this.#enqueue(data, isBinary);
  }

  terminate(): void {
    this.ws.terminate();
  }

  protected write(msg: unknown): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(msg));
  }

  #enqueue(data: Buffer, isBinary: boolean): void {
    this.#queue = this.#queue
      .then(() => this.#receive(data, isBinary))
      .catch((err: unknown) => this.log.error({ err }, `${this.#protocol.noun} handling failed`));
  }

  async #receive(data: Buffer, isBinary: boolean): Promise<void> {
    if (!this.serving) return;
    const { noun, maxBytes } = this.#protocol;
    if (isBinary) return this.sendError('malformed', 'binary frames are not part of the protocol; send JSON text', undefined);
    if (data.length > maxBytes) return this.sendError('malformed', `${noun} larger than ${maxBytes} bytes`, undefined);
    let raw: unknown;
    try {
      raw = JSON.parse(data.toString('utf8'));
    } catch {
      return this.sendError('malformed', `${noun} is not valid JSON`, undefined);
    }
    const envelope = this.#protocol.envelope(raw);
    if ('error' in envelope) return this.sendError('malformed', envelope.error, envelope.ref);
    const { name } = envelope;
    if (!Object.hasOwn(this.#protocol.schemas, name)) return this.sendError('malformed', this.#protocol.unknownName(name), envelope.ref);
    const parsed = this.#protocol.schemas[name as Name].safeParse(envelope.payload);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return this.sendError('invalid_argument', `${name}: ${issue.path.join('.') || this.#protocol.root}: ${issue.message}`, envelope.ref);
    }
    const ref = this.#protocol.refOf?.(parsed.data) ?? envelope.ref;
    try {
      await this.handle(name as Name, parsed.data, ref);
    } catch (err) {
      if (err instanceof ApiError && this.#protocol.clientCodes.has(err.code)) return this.sendError(err.code, err.message, ref);
      this.log.error({ err, name }, `${noun} failed`);
      this.sendError(this.#protocol.failedCode, `${name} failed`, ref);
    }
  }
}
