// HTTP pieces every edge uses (the API server, Twirp, WHIP/WHEP, the console, the egress taps): a
// bounded body, a JSON answer, the Bearer credential and the path after a prefix. A leaf: it knows
// no route and no layer above it (the egress worker's taps use it without loading src/api); every
// failure is an ApiError with its code, mapped by each transport.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../errors.ts';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = JSON.stringify(body);
  // Exactly `application/json`: livekit-server-sdk parses error bodies only for that exact value.
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), ...headers });
  res.end(payload);
}

/** Reads the whole body, refusing more than `limit` bytes without buffering them. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new ApiError('malformed', `request body exceeds ${limit} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** The Bearer token of a request, if it carries one (a malformed header is refused, not ignored). */
export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S{1,4096})\s*$/i.exec(h);
  if (!m) throw new ApiError('unauthenticated', 'the Authorization header must be "Bearer <token>"');
  return m[1];
}

/** The path segments after `prefix`, decoded. */
export function pathSegments(pathname: string, prefix: string): string[] {
  try {
    return pathname.slice(prefix.length).split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw new ApiError('malformed', 'the path is not valid percent-encoding');
  }
}
