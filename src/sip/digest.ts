// HTTP digest authentication as SIP uses it (RFC 3261 §22.4, RFC 2617 with MD5, qop=auth or none):
// the challenge a trunk with a username/password sends, and the check of the caller's answer.
// Nonces are HMACs of their issue time, so they need no state and expire by themselves.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseParams } from './message.ts';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

export interface DigestCredentials {
  username: string;
  realm: string;
  nonce: string;
  uri: string;
  response: string;
  qop: string | undefined;
  nc: string | undefined;
  cnonce: string | undefined;
  algorithm: string | undefined;
}

/** Parses `Digest username="…", realm="…", …` (quoted strings may hold commas). */
export function parseDigest(value: string | undefined): DigestCredentials | undefined {
  if (!value || !/^digest\s/i.test(value)) return undefined;
  const fields = new Map<string, string>();
  const re = /([a-z0-9-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/gi;
  for (let m = re.exec(value.slice(7)); m; m = re.exec(value.slice(7))) {
    fields.set(m[1]!.toLowerCase(), m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!);
  }
  const get = (k: string) => fields.get(k);
  const username = get('username');
  const realm = get('realm');
  const nonce = get('nonce');
  const uri = get('uri');
  const response = get('response');
  if (username === undefined || realm === undefined || !nonce || !uri || !response) return undefined;
  return { username, realm, nonce, uri, response, qop: get('qop'), nc: get('nc'), cnonce: get('cnonce'), algorithm: get('algorithm') };
}

export class DigestAuth {
  readonly realm: string;
  readonly #key = randomBytes(32);
  readonly #maxAgeMs: number;

  constructor(realm: string, maxAgeMs = 5 * 60_000) {
    this.realm = realm;
    this.#maxAgeMs = maxAgeMs;
  }

  #nonce(issuedMs: number): string {
    const t = issuedMs.toString(16);
    return `${t}.${createHmac('sha256', this.#key).update(t).digest('hex').slice(0, 32)}`;
  }

  /** The WWW-Authenticate value of a 401. */
  challenge(nowMs = Date.now()): string {
    return `Digest realm="${this.realm}", nonce="${this.#nonce(nowMs)}", algorithm=MD5, qop="auth"`;
  }

  /** 'ok', 'stale' (our nonce, expired: challenge again) or 'bad' (wrong user, password or nonce). */
  verify(authorization: string | undefined, method: string, expected: { username: string; password: string }, nowMs = Date.now()): 'ok' | 'stale' | 'bad' {
    const c = parseDigest(authorization);
    if (!c || c.realm !== this.realm) return 'bad';
    if (c.algorithm && c.algorithm.toUpperCase() !== 'MD5') return 'bad';
    const dot = c.nonce.indexOf('.');
    const issued = parseInt(c.nonce.slice(0, dot), 16);
    if (dot < 0 || !Number.isFinite(issued) || this.#nonce(issued) !== c.nonce) return 'bad';
    const ha1 = md5(`${expected.username}:${this.realm}:${expected.password}`);
    const ha2 = md5(`${method}:${c.uri}`);
    const qop = c.qop?.toLowerCase();
    if (qop && qop !== 'auth') return 'bad';
    if (qop && (!c.nc || !c.cnonce)) return 'bad';
    const want = qop ? md5(`${ha1}:${c.nonce}:${c.nc}:${c.cnonce}:auth:${ha2}`) : md5(`${ha1}:${c.nonce}:${ha2}`);
    const got = Buffer.from(c.response.toLowerCase());
    const ok = c.username === expected.username && got.length === want.length && timingSafeEqual(got, Buffer.from(want));
    if (!ok) return 'bad';
    return nowMs - issued > this.#maxAgeMs ? 'stale' : 'ok';
  }
}

/** A client's Authorization value (tests and outbound calls). */
export function digestAnswer(challenge: string, req: { method: string; uri: string; username: string; password: string }): string {
  const p = parseParams(`x;${challenge.replace(/^Digest\s+/i, '').split(',').join(';')}`);
  const realm = p.get('realm') ?? '';
  const nonce = p.get('nonce') ?? '';
  const cnonce = randomBytes(8).toString('hex');
  const nc = '00000001';
  const ha1 = md5(`${req.username}:${realm}:${req.password}`);
  const ha2 = md5(`${req.method}:${req.uri}`);
  const response = md5(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`);
  return `Digest username="${req.username}", realm="${realm}", nonce="${nonce}", uri="${req.uri}", response="${response}", algorithm=MD5, qop=auth, nc=${nc}, cnonce="${cnonce}"`;
}
