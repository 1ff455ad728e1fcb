import type { TwirpError } from 'livekit-server-sdk';
import { expect } from 'vitest';

/** The error `p` rejects with, asserted to be a `type`; fails the test if `p` resolves. */
export async function rejection<E extends Error>(p: Promise<unknown>, type: abstract new (...args: never[]) => E): Promise<E> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as E;
}

/** The Twirp error code and message `p` rejects with (as the SDK's TwirpError); fails the test if `p` resolves. */
export async function twirpError(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err = (await p.then(() => undefined, (e: unknown) => e)) as TwirpError | undefined;
  expect(err, 'the call should fail').toBeDefined();
  return { code: String(err!.code), message: err!.message };
}
