// The opening sequence every WebSocket protocol of the gateway shares, whatever its frames look like
// (roomgate's JSON at /rtc and /agent, LiveKit's protobuf signaling at /rtc and its agent workers at
// /agent): frames that arrive while the token is checked are held, the token is checked, the
// connection is set up, then the held frames are replayed in arrival order ahead of any later frame
// and the heartbeat starts. A refusal closes the socket with the code the protocol asks for.
import type { WebSocket } from 'ws';
import { authorize } from '../auth/authorize.ts';
import type { Claims } from '../auth/grants.ts';
import { TWIRP_STATUS, type TwirpCode } from '../errors.ts';
import type { Logger } from '../logger.ts';

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

export interface AuthenticatedSocketDeps {
  verifier: { verify(token: string): Promise<Claims> };
  pingIntervalMs: number;
  log: Logger;
}

/** How a refused connection is closed. */
export interface Refusal {
  code: number;
  reason: string;
}

/**
 * A WebSocket connection that serves frames only once its `access_token` (the endpoint's upgrade
 * puts a header token there) is verified and `open` has set it up. The subclass says what the token
 * must grant, what it opens, how a refusal is answered, what a frame does and what the socket's end
 * releases.
 */
export abstract class AuthenticatedSocket {
  protected readonly ws: WebSocket;
  protected log: Logger;
  readonly #deps: AuthenticatedSocketDeps;
  readonly #onGone: () => void;
  #pinger: NodeJS.Timeout | undefined;

  constructor(ws: WebSocket, deps: AuthenticatedSocketDeps, onGone: () => void) {
    this.ws = ws;
    this.#deps = deps;
    this.#onGone = onGone;
    this.log = deps.log;
    ws.on('error', (err) => this.log.debug({ err: err.message }, 'websocket error'));
  }

  /** The refusal's message when the token is absent. */
  protected abstract readonly missingToken: string;
  /** Throws (permission_denied) when the claims lack what this endpoint needs. */
  protected grant(_claims: Claims): void {}
  /** Sets the connection up for verified claims; false when the socket went meanwhile (nothing more to serve). */
  protected abstract open(claims: Claims, url: URL): Promise<boolean> | boolean;
  /** Answers a failed token check or `open` (an error frame, a leave) and says how to close. */
  protected abstract refused(err: unknown): Refusal;
  /** One frame, after the opening; held frames come here first, in arrival order. */
  protected abstract receive(data: Buffer, isBinary: boolean): void;
  /** The socket closed (at any point, also while opening): release what `open` took. */
  protected abstract closed(): void;

  /** Authenticates and starts serving; a rejection is the caller's to log, and the socket terminated. */
  async start(url: URL): Promise<void> {
    const early: [Buffer, boolean][] = [];
    const hold = (data: Buffer, isBinary: boolean) => early.push([data, isBinary]);
    this.ws.on('message', hold);
    this.ws.once('close', () => {
      clearInterval(this.#pinger);
      this.#onGone();
      this.closed();
    });
    try {
      const claims = await authorize(this.#deps.verifier, url.searchParams.get('access_token'), {
        missing: this.missingToken,
        grant: (c) => this.grant(c),
      });
      if (!(await this.open(claims, url))) return;
    } catch (err) {
      const { code, reason } = this.refused(err);
      this.ws.close(code, closeReason(reason));
      return;
    }
    this.ws.off('message', hold);
    this.ws.on('message', (data: Buffer, isBinary: boolean) => this.receive(data, isBinary));
    this.#pinger = heartbeat(this.ws, this.#deps.pingIntervalMs, () => this.terminate());
    for (const [data, isBinary] of early) this.receive(data, isBinary);
  }

  terminate(): void {
    this.ws.terminate();
  }
}
