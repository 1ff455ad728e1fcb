// The operator's console at /console: static page (templates/console, served as is: no build step),
// sign-in with an API key and secret into a signed HttpOnly cookie, a JSON API that calls the
// gateway's Twirp services in-process (same handlers and grant checks as /twirp), and one
// server-sent-events stream that pushes a snapshot of rooms, ingresses, egresses and the egress
// queue whenever it changes.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Claims } from '../auth/grants.ts';
import { ApiError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { readBody, sendJson } from '../http/body.ts';
import {
  SESSION_COOKIE,
  cookieValue,
  crossSiteReason,
  issueSession,
  readSession,
  safeEqual,
  sessionCookieHeader,
  type ConsoleSession,
} from './session.ts';

export const CONSOLE_PATH = '/console';
const ASSETS = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../templates/console');
const STATIC: Record<string, { file: string; type: string }> = {
  '/console': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/console/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};
/** The services the console may call, by Twirp name. */
const SERVICES = new Set(['livekit.RoomService', 'livekit.Ingress', 'livekit.Egress', 'livekit.AgentDispatchService']);
const SNAPSHOT_MS = 1000;
const KEEPALIVE_MS = 15_000;
const MAX_BODY = 256 * 1024;

/** What the snapshot adds to the Twirp answers: live facts no LiveKit message carries. */
export interface ConsoleLive {
  activeSpeakers(room: string): { identity: string; level: number }[];
  ingressHealth(ingressId: string): { videoHandling?: string | undefined; keyframeIntervalMs: number } | undefined;
  queue(): Promise<unknown>;
}

export interface ConsoleDeps {
  keys: Readonly<Record<string, string>>;
  sessionTtl: number;
  twirp: { invoke(service: string, method: string, json: unknown, claims: Claims): Promise<unknown> };
  live: ConsoleLive;
  /** A short-lived, hidden, subscribe-only token for a WHEP preview of `room`. */
  previewToken(room: string): Promise<string>;
  log: Logger;
}

interface Client {
  res: ServerResponse;
  session: ConsoleSession;
  last: string;
}

/** Operator claims for one call: every service grant, roomAdmin scoped to the room the call names. */
function operatorClaims(session: ConsoleSession, room: string | undefined): Claims {
  return {
    iss: session.apiKey,
    sub: 'console',
    exp: session.exp,
    video: {
      roomCreate: true,
      roomList: true,
      roomRecord: true,
      ingressAdmin: true,
      roomAdmin: true,
      ...(room ? { room } : {}),
    },
  };
}

function roomOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const room = b.room ?? b.room_name ?? b.roomName;
  return typeof room === 'string' ? room : undefined;
}

export class ConsoleServer {
  readonly #d: ConsoleDeps;
  readonly #clients = new Set<Client>();
  #timer: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #building = false;
  #closed = false;

  constructor(deps: ConsoleDeps) {
    this.#d = deps;
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const asset = STATIC[url.pathname];
    if (asset) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return this.#error(res, new ApiError('bad_route', 'GET only'));
      const body = await readFile(path.join(ASSETS, asset.file));
      res.writeHead(200, {
        'Content-Type': asset.type,
        'Content-Length': body.length,
        'Cache-Control': 'no-cache',
        // The console runs only its own scripts, is never framed, and talks only to this origin.
        'Content-Security-Policy':
          "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const api = url.pathname.slice(`${CONSOLE_PATH}/api/`.length);
    if (!url.pathname.startsWith(`${CONSOLE_PATH}/api/`)) return this.#error(res, new ApiError('not_found', `no console page ${url.pathname}`));
    try {
      if (req.method === 'POST') {
        const cross = crossSiteReason(req);
        if (cross) throw new ApiError('permission_denied', `cross-site request refused: ${cross}`);
      }
      if (api === 'login' && req.method === 'POST') return await this.#login(req, res);
      if (api === 'logout' && req.method === 'POST') {
        res.setHeader('Set-Cookie', sessionCookieHeader('', 0, false));
        return sendJson(res, 200, {});
      }
      const session = this.#session(req);
      if (api === 'session' && req.method === 'GET') {
        return sendJson(res, 200, { apiKey: session.apiKey, expiresAt: session.exp, csrf: session.csrf }, { 'Cache-Control': 'no-store' });
      }
      if (api === 'events' && req.method === 'GET') return this.#subscribe(req, res, session);
      if (req.method !== 'POST') throw new ApiError('bad_route', `unsupported method ${req.method} for ${url.pathname}`);
      // State changes carry the session's CSRF token: a page elsewhere cannot read it.
      const csrf = req.headers['x-csrf-token'];
      if (typeof csrf !== 'string' || !safeEqual(csrf, session.csrf)) throw new ApiError('permission_denied', 'missing or wrong X-CSRF-Token');
      const body = await this.#json(req);
      if (api === 'preview') {
        const room = roomOf(body);
        if (!room) throw new ApiError('invalid_argument', 'room is required', { argument: 'room' });
        return sendJson(res, 200, { token: await this.#d.previewToken(room) });
      }
      const m = /^twirp\/([\w.]+)\/(\w+)$/.exec(api);
      if (!m || !SERVICES.has(m[1]!)) throw new ApiError('bad_route', `no console API ${url.pathname}`);
      const out = await this.#d.twirp.invoke(m[1]!, m[2]!, body, operatorClaims(session, roomOf(body)));
      this.#d.log.info({ apiKey: session.apiKey, rpc: `${m[1]}/${m[2]}` }, 'console action');
      this.#refreshSoon();
      return sendJson(res, 200, out);
    } catch (err) {
      return this.#error(res, err, req);
    }
  }

  /** Ends the live streams and stops their timers. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearInterval(this.#timer);
      clearInterval(this.#keepalive);
      for (const c of this.#clients) c.res.end();
      this.#clients.clear();
    }
    return Promise.resolve();
  }

  #error(res: ServerResponse, err: unknown, req?: IncomingMessage): void {
    const apiErr = err instanceof ApiError ? err : new ApiError('internal', 'internal error');
    if (!(err instanceof ApiError)) this.#d.log.error({ err }, 'console request failed');
    sendJson(res, apiErr.status, apiErr.toJSON(), req && !req.readableEnded ? { Connection: 'close' } : {});
  }

  #session(req: IncomingMessage): ConsoleSession {
    const r = readSession(cookieValue(req, SESSION_COOKIE), this.#d.keys);
    if ('error' in r) throw new ApiError('unauthenticated', r.error);
    return r.session;
  }

  async #json(req: IncomingMessage): Promise<unknown> {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    // JSON only: a cross-site <form> can send text/plain or urlencoded bodies, never this type.
    if (type !== 'application/json') throw new ApiError('malformed', `Content-Type must be application/json, not '${type}'`);
    const raw = await readBody(req, MAX_BODY);
    try {
      const body: unknown = JSON.parse(raw.length === 0 ? '{}' : raw.toString('utf8'));
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('not an object');
      return body;
    } catch (err) {
      throw new ApiError('malformed', `the request body is not a JSON object: ${(err as Error).message}`);
    }
  }

  async #login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = (await this.#json(req)) as { apiKey?: unknown; apiSecret?: unknown };
    const key = typeof body.apiKey === 'string' ? body.apiKey : '';
    const secret = typeof body.apiSecret === 'string' ? body.apiSecret : '';
    const expected = Object.hasOwn(this.#d.keys, key) ? this.#d.keys[key]! : undefined;
    // Compared in constant time; an unknown key compares against itself so both fail alike.
    const ok = safeEqual(secret, expected ?? `${secret}x`) && expected !== undefined;
    if (!ok) {
      this.#d.log.warn({ apiKey: key.slice(0, 64) }, 'console sign-in refused');
      throw new ApiError('unauthenticated', 'unknown API key or wrong secret');
    }
    const { cookie, session } = issueSession(key, expected, this.#d.sessionTtl);
    this.#d.log.info({ apiKey: key }, 'console sign-in');
    const secure = req.headers['x-forwarded-proto'] === 'https';
    sendJson(res, 200, { apiKey: key, expiresAt: session.exp, csrf: session.csrf }, { 'Set-Cookie': sessionCookieHeader(cookie, this.#d.sessionTtl, secure) });
  }

  #subscribe(req: IncomingMessage, res: ServerResponse, session: ConsoleSession): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const client: Client = { res, session, last: '' };
    this.#clients.add(client);
    req.socket.setTimeout(0);
    req.once('close', () => {
      this.#clients.delete(client);
      if (this.#clients.size === 0) this.#stopTimers();
    });
    this.#timer ??= setInterval(() => this.#broadcast(), SNAPSHOT_MS);
    this.#keepalive ??= setInterval(() => {
      for (const c of this.#clients) c.res.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.#broadcast();
  }

  #stopTimers(): void {
    clearInterval(this.#timer);
    clearInterval(this.#keepalive);
    this.#timer = undefined;
    this.#keepalive = undefined;
  }

  #refreshSoon(): void {
    if (this.#clients.size > 0) setTimeout(() => this.#broadcast(), 100).unref();
  }

  /** One snapshot for every subscriber; each gets it only when it differs from what it last got. */
  #broadcast(): void {
    if (this.#building || this.#closed || this.#clients.size === 0) return;
    this.#building = true;
    this.#snapshot()
      .then((snap) => {
        const json = JSON.stringify(snap);
        const now = Date.now();
        for (const c of this.#clients) {
          if (c.session.exp * 1000 <= now) {
            c.res.end('event: expired\ndata: {}\n\n');
            this.#clients.delete(c);
            continue;
          }
          if (c.last === json) continue;
          c.last = json;
          c.res.write(`event: snapshot\ndata: ${json}\n\n`);
        }
        if (this.#clients.size === 0) this.#stopTimers();
      })
      .catch((err: unknown) => {
        const msg = err instanceof Error ? err.message : String(err);
        this.#d.log.warn({ err: msg }, 'console snapshot failed');
        for (const c of this.#clients) c.res.write(`event: problem\ndata: ${JSON.stringify({ msg })}\n\n`);
      })
      .finally(() => {
        this.#building = false;
      });
  }

  async #snapshot(): Promise<Record<string, unknown>> {
    const system: ConsoleSession = { apiKey: Object.keys(this.#d.keys)[0]!, exp: Math.floor(Date.now() / 1000) + 60, csrf: '' };
    const call = (service: string, m: string, body: Record<string, unknown>) =>
      this.#d.twirp.invoke(service, m, body, operatorClaims(system, roomOf(body))) as Promise<Record<string, unknown>>;
    const [roomList, ingress, egress, queue] = await Promise.all([
      call('livekit.RoomService', 'ListRooms', {}),
      call('livekit.Ingress', 'ListIngress', {}),
      call('livekit.Egress', 'ListEgress', {}),
      this.#d.live.queue().catch((err: unknown) => ({ error: (err as Error).message })),
    ]);
    const rooms = await Promise.all(
      ((roomList.rooms ?? []) as { name: string }[]).map(async (room) => {
        const parts = await call('livekit.RoomService', 'ListParticipants', { room: room.name }).catch(() => ({ participants: [] }));
        return { ...room, participants: parts.participants ?? [], activeSpeakers: this.#d.live.activeSpeakers(room.name) };
      }),
    );
    const ingresses = ((ingress.items ?? []) as { ingress_id: string }[]).map((i) => ({ ...i, health: this.#d.live.ingressHealth(i.ingress_id) ?? null }));
    // The newest 50 egresses: the list is kept for days.
    const egresses = ((egress.items ?? []) as unknown[]).slice(-50).reverse();
    return { rooms, ingresses, egresses, queue, at: Date.now() };
  }
}
