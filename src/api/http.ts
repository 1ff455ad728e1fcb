// The gateway's HTTP server: /twirp/* (API), /healthz, /metrics, the /rtc WebSocket upgrade, the
// browser SDK, the demo page and its dev-only tokens; other modules add routes by prefix (/w, /whep, /play).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { sendJson } from '../http/body.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { TWIRP_PREFIX, type TwirpRouter } from './twirp/router.ts';

export interface HttpServerDeps {
  twirp: TwirpRouter;
  /** WebSocket upgrades (signaling). */
  upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => void;
  metrics: Metrics;
  health: () => Promise<{ ok: boolean; details: Record<string, unknown> }>;
  /** The browser SDK bundle (served at /sdk/roomgate.js). */
  sdk: () => Promise<string>;
  /** Path prefixes handled elsewhere (WHIP /w, WHEP /whep, the /play page); each handler answers itself. */
  routes?: { prefix: string; handle: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> }[];
  /** Mints a demo join token; present only with the development key on loopback. */
  devToken?: (room: string, identity: string) => Promise<string>;
  log: Logger;
}

/** How long the server keeps an idle keep-alive socket; longer than any HTTP client's pool keeps one. */
export const HTTP_KEEP_ALIVE_MS = 65_000;

const DEMO_PAGE = fileURLToPath(new URL('../../templates/demo/index.html', import.meta.url));

export function createHttpServer(deps: HttpServerDeps): http.Server {
  const server = http.createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
    void route(req, res, deps).catch((err: unknown) => {
      deps.log.error({ err }, 'unhandled error in HTTP handler');
      sendJson(res, 500, { code: 'internal', msg: 'internal error', meta: {} });
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const url = parseUrl(req.url);
    if (!url) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    try {
      deps.upgrade(req, socket, head, url);
    } catch (err) {
      deps.log.error({ err }, 'upgrade failed');
      socket.destroy();
    }
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  // Idle keep-alive sockets outlive every client's pool: Node's 5 s default sat next to undici's
  // 4 s (the SDK's fetch), so when media load stalled either event loop the server closed a socket
  // the client had just sent a request on (ECONNRESET in `bench ingest`). At 65 s the client, which
  // honours the `Keep-Alive: timeout=65` hint less a margin, always closes first. headersTimeout
  // counts only while a request's headers arrive (not idle time), so it stays short against slow
  // senders.
  server.keepAliveTimeout = HTTP_KEEP_ALIVE_MS;
  // A client that sends garbage instead of HTTP gets 400 and the socket closes; nothing else happens.
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}

/** The request target as a URL, or undefined for one that does not parse (e.g. `http://a:b/x`). */
function parseUrl(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? '/', 'http://gateway');
  } catch {
    return undefined;
  }
}

async function route(req: IncomingMessage, res: ServerResponse, deps: HttpServerDeps): Promise<void> {
  const url = parseUrl(req.url);
  if (!url) return sendJson(res, 400, { code: 'malformed', msg: 'request target is not a valid URL', meta: {} });
  if (url.pathname.startsWith(TWIRP_PREFIX)) return deps.twirp.handle(req, res, url);
  const extra = deps.routes?.find((r) => url.pathname === r.prefix || url.pathname.startsWith(`${r.prefix}/`));
  if (extra) return extra.handle(req, res, url);
  if (url.pathname === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
    const { ok, details } = await deps.health();
    return sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'unavailable', ...details });
  }
  if (url.pathname === '/metrics' && req.method === 'GET') {
    const text = await deps.metrics.registry.metrics();
    res.writeHead(200, { 'Content-Type': deps.metrics.registry.contentType });
    res.end(text);
    return;
  }
  if ((url.pathname === '/' || url.pathname === '/demo') && req.method === 'GET') {
    const html = await readFile(DEMO_PAGE);
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': html.length });
    res.end(html);
    return;
  }
  if (url.pathname === '/sdk/roomgate.js' && req.method === 'GET') {
    const js = await deps.sdk();
    // A public module: pages on other origins import it (`<script type="module">` fetches in CORS mode).
    res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache', 'Access-Control-Allow-Origin': '*' });
    res.end(js);
    return;
  }
  if (url.pathname === '/dev/token' && req.method === 'GET') {
    if (!deps.devToken) {
      return sendJson(res, 404, { code: 'not_found', msg: 'demo tokens are only minted with the development API key', meta: {} });
    }
    const room = url.searchParams.get('room') ?? '';
    const identity = url.searchParams.get('identity') ?? '';
    if (!/^[\w.@-]{1,64}$/.test(room) || !/^[\w.@-]{1,64}$/.test(identity)) {
      return sendJson(res, 400, { code: 'invalid_argument', msg: 'room and identity: 1-64 letters, digits, _ . @ -', meta: {} });
    }
    return sendJson(res, 200, { token: await deps.devToken(room, identity) });
  }
  sendJson(res, 404, { code: 'not_found', msg: `no route for ${req.method} ${url.pathname}`, meta: {} });
}
