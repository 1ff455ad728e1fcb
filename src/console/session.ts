// Console sign-in sessions: a signed, expiring cookie value and the checks that keep other sites
// out. Stateless: the cookie carries the API key, expiry and CSRF token, signed with a key derived
// from that API key's secret, so rotating the secret signs every console session out.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const SESSION_COOKIE = 'roomgate_console';

export interface ConsoleSession {
  /** The API key signed in with. */
  apiKey: string;
  /** Expiry, Unix seconds. */
  exp: number;
  /** Sent back in X-CSRF-Token on every state-changing request. */
  csrf: string;
}

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');

function signingKey(apiSecret: string): Buffer {
  return createHmac('sha256', apiSecret).update('roomgate console session v1').digest();
}

function sign(payload: string, apiSecret: string): string {
  return createHmac('sha256', signingKey(apiSecret)).update(payload).digest('base64url');
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Equal lengths for timingSafeEqual; the length check itself leaks only the length.
  return x.length === y.length && timingSafeEqual(x, y);
}

export function issueSession(apiKey: string, apiSecret: string, ttlSeconds: number, now = Date.now()): { cookie: string; session: ConsoleSession } {
  const session: ConsoleSession = { apiKey, exp: Math.floor(now / 1000) + ttlSeconds, csrf: b64(randomBytes(18)) };
  const payload = b64(JSON.stringify({ k: session.apiKey, e: session.exp, c: session.csrf }));
  return { cookie: `${payload}.${sign(payload, apiSecret)}`, session };
}

/** The session in a cookie value, or a reason it is not one (unsigned, forged, expired, unknown key). */
export function readSession(
  value: string | undefined,
  keys: Readonly<Record<string, string>>,
  now = Date.now(),
): { session: ConsoleSession } | { error: string } {
  if (!value) return { error: 'not signed in' };
  const [payload = '', sig = '', extra] = value.split('.');
  if (extra !== undefined || !payload || !sig) return { error: 'malformed session cookie' };
  let parsed: { k?: unknown; e?: unknown; c?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof parsed;
  } catch {
    return { error: 'malformed session cookie' };
  }
  if (typeof parsed.k !== 'string' || typeof parsed.e !== 'number' || typeof parsed.c !== 'string') return { error: 'malformed session cookie' };
  const secret = keys[parsed.k];
  if (secret === undefined || !safeEqual(sig, sign(payload, secret))) return { error: 'invalid session: sign in again' };
  if (parsed.e * 1000 <= now) return { error: 'session expired: sign in again' };
  return { session: { apiKey: parsed.k, exp: parsed.e, csrf: parsed.c } };
}

export function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookieHeader(value: string, maxAge: number, secure: boolean): string {
  // Path=/console: the cookie goes nowhere else (not to /twirp, which takes bearer tokens only).
  return `${SESSION_COOKIE}=${value}; Path=/console; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/**
 * Why a request is cross-site, or undefined when it is not. Browsers send Sec-Fetch-Site and, on
 * POST, Origin; a port differs between sites on one host (127.0.0.1:A and :B are the same *site*
 * to SameSite cookies), so the origin, not the cookie, is what tells them apart.
 */
export function crossSiteReason(req: IncomingMessage): string | undefined {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `Sec-Fetch-Site is '${site}'`;
  const origin = req.headers.origin;
  if (origin !== undefined) {
    const host = req.headers.host ?? '';
    if (origin !== `http://${host}` && origin !== `https://${host}`) return `Origin '${origin}' is not this console's`;
  }
  return undefined;
}
