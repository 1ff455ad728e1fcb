// Clock helpers shared by the API records and the workers.
import { setTimeout as delay } from 'node:timers/promises';

/** Now in nanoseconds since the epoch, the unit of LiveKit's *At fields. */
export const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

/**
 * Resolves after `ms`, or at once when `signal` aborts. node:timers/promises removes its abort
 * listener when the timer fires; a hand-made one piles up a listener per sleep on a long-lived signal.
 */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  delay(ms, undefined, signal ? { signal } : {}).catch(() => undefined);
