// The one way an edge turns a request's access token into verified claims: a missing token is
// unauthenticated (401) with the edge's own hint, a bad one is the verifier's unauthenticated
// naming what failed, and a token without the grant the edge needs is permission_denied (403) from
// the grant check (auth/permissions.ts, or the edge's own policy for WHEP and /agent). Where the
// token comes from (Bearer header or `access_token`) is the edge's: each wire says so differently.
import { unauthenticated } from '../errors.ts';
import type { Claims } from './grants.ts';

export interface AuthorizeOptions {
  /** The unauthenticated message when the request carries no token: how this edge wants it sent. */
  missing: string;
  /** The grant check; throws permission_denied when the claims do not allow what was asked. */
  grant?: (claims: Claims) => void;
}

export async function authorize(verifier: { verify(token: string): Promise<Claims> }, token: string | undefined | null, opts: AuthorizeOptions): Promise<Claims> {
  if (!token) throw unauthenticated(opts.missing);
  const claims = await verifier.verify(token);
  opts.grant?.(claims);
  return claims;
}
