// The egress workers' credential for the gateway's internal tap API: a shared secret, not a client
// grant. A `roomRecord` token lets a client start egress through the API, which is recorded and
// announced; the tap API hands out a room's media, so only a worker may call it. By default the
// secret is derived from the first API secret (HMAC with a fixed label), so `npm start`'s worker
// child, which loads the same configuration, has it without another setting, and the API secret
// itself never travels in a request.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

const LABEL = 'roomgate egress worker credential v1';

export function deriveWorkerSecret(apiSecret: string): string {
  return createHmac('sha256', apiSecret).update(LABEL).digest('base64url');
}

/** Compares in constant time (digests of both, so the length does not leak either). */
export function isWorkerSecret(presented: string, secret: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}
