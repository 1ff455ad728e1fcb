// Tokens minted by the real livekit-server-sdk are accepted; ours verify with the SDK's verifier.
import { SignJWT } from 'jose';
import { AccessToken, TokenVerifier as SdkVerifier, TrackSource } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import { TokenVerifier, mintToken } from '../../src/auth/tokens.ts';
import { ApiError } from '../../src/errors.ts';

const KEY = 'APIkey1';
const SECRET = 'secret-one-0123456789-0123456789-abc';
const verifier = new TokenVerifier({ [KEY]: SECRET, other: 'other-secret' });

async function rejection(token: string): Promise<ApiError> {
  const err = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  expect((err as ApiError).code).toBe('unauthenticated');
  return err as ApiError;
}

describe('access tokens', () => {
  it('accepts an SDK AccessToken with all its claims', async () => {
    const at = new AccessToken(KEY, SECRET, { identity: 'alice', name: 'Alice', metadata: '{"a":1}', attributes: { x: 'y' } });
    at.addGrant({ roomJoin: true, room: 'r1', canPublish: true, canPublishSources: [TrackSource.CAMERA], hidden: false });
    const claims = await verifier.verify(await at.toJwt());
    expect(claims).toMatchObject({
      iss: KEY,
      sub: 'alice',
      name: 'Alice',
      metadata: '{"a":1}',
      attributes: { x: 'y' },
      video: { roomJoin: true, room: 'r1', canPublish: true, canPublishSources: ['camera'] },
    });
  });

  it('mints tokens the SDK verifier accepts', async () => {
    const token = await mintToken(KEY, SECRET, { identity: 'bob', video: { roomAdmin: true, room: 'r' }, ttl: 60 });
    const claims = await new SdkVerifier(KEY, SECRET).verify(token);
    expect(claims.sub).toBe('bob');
    expect(claims.video).toEqual({ roomAdmin: true, room: 'r' });
    expect(claims.exp! - claims.nbf!).toBe(60);
  });

  it('rejects a wrong secret, an unknown key, an expired or future token, and garbage', async () => {
    const wrong = await new AccessToken(KEY, 'not-the-secret').toJwt();
    expect((await rejection(wrong)).message).toBe('access token signature is invalid');
    expect((await rejection(await new AccessToken('nokey', SECRET).toJwt())).message).toBe("unknown API key 'nokey'");
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer(KEY).sign(new TextEncoder().encode(SECRET));
    expect((await rejection(await sign({ exp: now - 120 }))).message).toBe('access token has expired');
    expect((await rejection(await sign({ exp: now + 600, nbf: now + 300 }))).message).toMatch(/not valid yet/);
    expect((await rejection(await sign({}))).message).toMatch(/exp/);
    expect((await rejection(await sign({ exp: now + 60, video: { roomAdmin: 'yes' } }))).message).toMatch(/video.roomAdmin/);
    expect((await rejection('not-a-jwt')).message).toBe('access token is not a valid JWT');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(`{"iss":"${KEY}","exp":${now + 60}}`).toString('base64url')}.`;
    await rejection(none);
  });

  it('allows a minute of clock skew, like LiveKit', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ exp: now - 30 }).setProtectedHeader({ alg: 'HS256' }).setIssuer(KEY).sign(new TextEncoder().encode(SECRET));
    await expect(verifier.verify(token)).resolves.toMatchObject({ iss: KEY });
  });
});
