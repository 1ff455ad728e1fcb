// The WebSocket endpoints' common part (/rtc for participants, /agent for agent workers): upgrade,
// track the connections, close them all on shutdown. What a connection does is its own class's job.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
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

  close(): void {
    for (const c of this.#connections) c.terminate();
    this.#wss.close();
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
