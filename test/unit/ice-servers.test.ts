// TURN REST credentials in coturn's use-auth-secret scheme, checked against openssl's HMAC-SHA1.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { iceServersFor, turnCredentials } from '../../src/signaling/iceServers.ts';

describe('ICE servers', () => {
  it('mints coturn use-auth-secret credentials: expiry:identity and base64 HMAC-SHA1', () => {
    const now = Date.UTC(2026, 0, 1);
    const { username, credential } = turnCredentials('north-secret', 'alice', 3600, now);
    expect(username).toBe(`${now / 1000 + 3600}:alice`);
    const expected = execFileSync('openssl', ['dgst', '-sha1', '-hmac', 'north-secret', '-binary'], { input: username });
    expect(credential).toBe(expected.toString('base64'));
  });

  it('lists STUN and TURN servers, and no TURN without a secret', () => {
    const servers = iceServersFor(
      { stunUrls: ['stun:stun.example.org:3478'], turnUrls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349'], turnSecret: 's', turnTtl: 600 },
      'bob',
    );
    expect(servers[0]).toEqual({ urls: ['stun:stun.example.org:3478'] });
    expect(servers[1]).toMatchObject({ urls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349'] });
    expect(servers[1]!.username).toMatch(/^\d+:bob$/);
    expect(iceServersFor({ stunUrls: [], turnUrls: ['turn:x'], turnTtl: 600 }, 'bob')).toEqual([]);
  });
});
