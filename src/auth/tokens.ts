// The one token verifier (every entry point: Twirp, signaling, WHIP, internal APIs) and the one minter
// (CLI, webhooks, tests). HS256 JWTs as LiveKit's protocol/auth writes them.
import { SignJWT, decodeJwt, errors as joseErrors, jwtVerify } from 'jose';
import { unauthenticated } from '../errors.ts';
import { claimsSchema, type Claims, type SipGrant, type VideoGrant } from './grants.ts';

/** LiveKit's verifier allows one minute of clock skew. */
const CLOCK_TOLERANCE_S = 60;
const encoder = new TextEncoder();

export class TokenVerifier {
  readonly #secrets: Map<string, Uint8Array>;

  constructor(keys: Record<string, string>) {
    this.#secrets = new Map(Object.entries(keys).map(([k, s]) => [k, encoder.encode(s)]));
  }

  /** Verifies signature, expiry and claim types; throws ApiError(unauthenticated) saying which failed. */
  async verify(token: string): Promise<Claims> {
    let issuer: unknown;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      throw unauthenticated('access token is not a valid JWT');
    }
    if (typeof issuer !== 'string' || issuer === '') throw unauthenticated('access token has no issuer (API key)');
    const secret = this.#secrets.get(issuer);
    if (!secret) throw unauthenticated(`unknown API key '${issuer}'`);
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, secret, {
        algorithms: ['HS256'],
        issuer,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw unauthenticated(describeJoseError(err));
    }
    const parsed = claimsSchema.safeParse(payload);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw unauthenticated(`access token claim '${issue.path.join('.')}' is invalid: ${issue.message}`);
    }
    return parsed.data;
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'access token has expired';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'access token signature is invalid';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'access token must be signed with HS256';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    return err.claim === 'nbf' ? 'access token is not valid yet (nbf)' : `access token claim '${err.claim}' is invalid`;
  }
  return 'access token is invalid';
}

export interface MintOptions {
  identity?: string;
  name?: string;
  metadata?: string;
  attributes?: Record<string, string>;
  kind?: string;
  video?: VideoGrant;
  sip?: SipGrant;
  /** base64 SHA-256 of a webhook body. */
  sha256?: string;
  /** Lifetime in seconds; LiveKit's default for join tokens is 6 h. */
  ttl?: number;
}

export async function mintToken(apiKey: string, apiSecret: string, opts: MintOptions = {}): Promise<string> {
  const { identity, ttl = 6 * 3600, ...rest } = opts;
  const claims: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) claims[k] = v;
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer(apiKey).setNotBefore(now).setExpirationTime(now + ttl);
  if (identity) jwt = jwt.setSubject(identity).setJti(identity);
  return jwt.sign(encoder.encode(apiSecret));
}
