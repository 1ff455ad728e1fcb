// The WebSocket endpoints' common part (/rtc for participants and LiveKit clients, /agent for agent
// workers): upgrade, track the connections, close them all on shutdown. JsonWsConnection is the one
// connection base of the JSON protocols (/rtc, /agent): it opens as every authenticated socket does
// (authenticatedSocket.ts), a refusal sends an error frame and closes with 4000 + the HTTP status of
// the error's code, and each frame goes parse → envelope → zod → handler, one at a time, in order.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ZodType } from 'zod';
import type { Claims } from '../auth/grants.ts';
import { ApiError, type TwirpCode } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { AuthenticatedSocket, wsCloseCode, type AuthenticatedSocketDeps, type Refusal } from './authenticatedSocket.ts';

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

export type JsonWsDeps = AuthenticatedSocketDeps;

/**
 * A connection of a JSON protocol. The subclass says what an accepted token opens (`open`), how an
 * error frame looks (`sendError`) and what each validated frame does (`handle`).
 */
export abstract class JsonWsConnection<Name extends string> extends AuthenticatedSocket {
  readonly #protocol: JsonWsProtocol<Name>;
  /** Frames run one at a time, in arrival order, as a client expects (connect before produce). */
  #queue: Promise<void> = Promise.resolve();
  protected readonly missingToken = 'missing access_token query parameter';

  constructor(ws: WebSocket, protocol: JsonWsProtocol<Name>, deps: JsonWsDeps, onGone: () => void) {
    super(ws, deps, onGone);
    this.#protocol = protocol;
  }

  /** The error a refused connection gets before it is closed, when it threw something other than an ApiError. */
  protected abstract readonly openFailure: string;
  protected abstract sendError(code: TwirpCode, message: string, ref: FrameRef): void;
  /** Runs a validated frame; an ApiError it throws is answered with `sendError`. */
  protected abstract handle(name: Name, payload: unknown, ref: FrameRef): unknown;
  /** False once the connection no longer serves frames (its participant left). */
  protected get serving(): boolean {
    return true;
  }

  /** A refusal: an error frame, then a close with 4000 + the HTTP status of the error's code. */
  protected refused(err: unknown): Refusal {
    if (!(err instanceof ApiError)) this.log.error({ err }, this.openFailure);
    const apiErr = err instanceof ApiError ? err : new ApiError('internal', this.openFailure);
    this.sendError(apiErr.code, apiErr.message, undefined);
    return { code: wsCloseCode(apiErr.code), reason: apiErr.message };
  }

  protected receive(data: Buffer, isBinary: boolean): void {
    this.#enqueue(data, isBinary);
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
