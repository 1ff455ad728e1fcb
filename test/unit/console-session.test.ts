// Console sessions: the cookie verifies only with its key's secret and before it expires, and the
// cross-site check tells another origin (even on the same host) from the console's own.
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { crossSiteReason, issueSession, readSession, sessionCookieHeader } from '../../src/console/session.ts';

const KEYS = { APIa: 'secret-a-that-is-long-enough-0123456789', APIb: 'secret-b-that-is-long-enough-0123456789' };
const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

describe('console session cookie', () => {
  it('reads back what it issued, until it expires', () => {
    const now = Date.now();
    const { cookie, session } = issueSession('APIa', KEYS.APIa, 60, now);
    expect(readSession(cookie, KEYS, now)).toEqual({ session });
    expect(readSession(cookie, KEYS, now + 61_000)).toEqual({ error: 'session expired: sign in again' });
  });

  it('refuses a cookie signed with another secret, a changed payload, or garbage', () => {
    const { cookie } = issueSession('APIa', KEYS.APIb, 60);
    expect(readSession(cookie, KEYS)).toEqual({ error: 'invalid session: sign in again' });
    const good = issueSession('APIa', KEYS.APIa, 60).cookie;
    const [payload, sig] = good.split('.');
    const longer = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), e: 9e9 })).toString('base64url');
    expect(readSession(`${longer}.${sig}`, KEYS)).toEqual({ error: 'invalid session: sign in again' });
    expect(readSession('abc', KEYS)).toEqual({ error: 'malformed session cookie' });
    expect(readSession(undefined, KEYS)).toEqual({ error: 'not signed in' });
    // A key that was removed from the configuration signs its sessions out.
    expect(readSession(good, { APIb: KEYS.APIb })).toEqual({ error: 'invalid session: sign in again' });
  });

  it('sets the cookie HttpOnly and SameSite=Strict on /console only', () => {
    expect(sessionCookieHeader('v', 60, false)).toBe('roomgate_console=v; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict');
    expect(sessionCookieHeader('v', 60, true)).toMatch(/; Secure$/);
  });

  it('tells cross-site requests from same-origin ones', () => {
    expect(crossSiteReason(req({ host: '127.0.0.1:7880', origin: 'http://127.0.0.1:7880', 'sec-fetch-site': 'same-origin' }))).toBeUndefined();
    expect(crossSiteReason(req({ host: '127.0.0.1:7880' }))).toBeUndefined();
    expect(crossSiteReason(req({ host: '127.0.0.1:7880', origin: 'http://127.0.0.1:8080' }))).toBe("Origin 'http://127.0.0.1:8080' is not this console's");
    expect(crossSiteReason(req({ host: '127.0.0.1:7880', 'sec-fetch-site': 'same-site' }))).toBe("Sec-Fetch-Site is 'same-site'");
    expect(crossSiteReason(req({ host: '127.0.0.1:7880', origin: 'null' }))).toBe("Origin 'null' is not this console's");
  });
});
