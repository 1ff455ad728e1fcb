// Clock helpers shared by the API records and the workers.

/** Now in nanoseconds since the epoch, the unit of LiveKit's *At fields. */
export const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

// sleep lives with the other async primitives; re-exported for the modules that import it from here.
export { sleep } from './async.ts';
