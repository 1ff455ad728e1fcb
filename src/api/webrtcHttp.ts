// HTTP shared by the WHIP (RFC 9725) and WHEP endpoints: RFC 9457 problem bodies, CORS, the
// `Link: rel="ice-server"` headers, reading an SDP body, and the session resource itself (PATCH for
// trickle / ICE restart with ETags, DELETE, GET, OPTIONS), which behaves the same for both.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { MAX_SDP_BYTES, SdpError, parseSdpFrag, writeSdpFrag, type IceCandidateLike, type MediaKind } from '../media/sdp.ts';
import type { IceServer } from '../sfu/ParticipantTypes.ts';
import { bearerToken as bearerOf, readBody } from '../http/body.ts';

/** An HTTP error with an RFC 9457 problem+json body. */
export class HttpProblem extends Error {
  override name = 'HttpProblem';
  constructor(
    readonly status: number,
    readonly title: string,
    detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const problem = (status: number, detail: string, headers: Record<string, string> = {}) =>
  new HttpProblem(status, TITLES[status] ?? 'Error', detail, headers);

/** Browsers call these endpoints from any origin (players, publishing pages); credentials are Bearer, not cookies. */
export const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After',
};

const PREFLIGHT_HEADERS: Record<string, string> = {
  ...CORS_HEADERS,
  'Access-Control-Allow-Methods': 'OPTIONS, GET, POST, PATCH, DELETE',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, If-Match',
  'Access-Control-Max-Age': '600',
};

export function sendProblem(res: ServerResponse, p: HttpProblem, instance?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ type: 'about:blank', title: p.title, status: p.status, detail: p.message, ...(instance ? { instance } : {}) });
  res.writeHead(p.status, {
    ...CORS_HEADERS,
    'Content-Type': 'application/problem+json',
    'Content-Length': Buffer.byteLength(body),
    ...p.headers,
  });
  res.end(body);
}

/** Maps whatever a handler threw to a problem: SDP and API errors keep their meaning, the rest is 500 (logged). */
export function toProblem(err: unknown, log: Logger): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err instanceof SdpError) return problem(422, err.message);
  if (err instanceof ApiError) {
    if (err.code === 'invalid_argument') return problem(422, err.message);
    if (err.code === 'resource_exhausted' || err.code === 'unavailable') return problem(503, err.message, { 'Retry-After': '10' });
    if (err.code === 'failed_precondition') return problem(409, err.message);
    return problem(err.status, err.message);
  }
  log.error({ err }, 'WHIP/WHEP request failed');
  return problem(500, 'internal error');
}

/** Answers an OPTIONS request: a CORS preflight, and what POST accepts (never ICE credentials). */
export function sendOptions(res: ServerResponse, extra: Record<string, string> = {}): void {
  res.writeHead(204, { ...PREFLIGHT_HEADERS, ...extra });
  res.end();
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...CORS_HEADERS, ...headers });
  res.end();
}

/** The Bearer token of a request, if it carries one (http/body.ts parses it); a malformed header is a 401 that asks for Bearer. */
export function bearerToken(req: IncomingMessage): string | undefined {
  try {
    return bearerOf(req);
  } catch (err) {
    if (err instanceof ApiError) throw problem(401, err.message, { 'WWW-Authenticate': 'Bearer' });
    throw err;
  }
}

function mediaType(req: IncomingMessage): string {
  return String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Reads a body of the given media type (415 otherwise, 413 over the size limit). */
export async function readTyped(req: IncomingMessage, type: string): Promise<string> {
  const got = mediaType(req);
  if (got !== type) throw problem(415, `Content-Type must be ${type}${got ? `, not ${got}` : ''}`, { 'Accept-Post': 'application/sdp' });
  try {
    return (await readBody(req, MAX_SDP_BYTES)).toString('utf8');
  } catch (err) {
    if (err instanceof ApiError) throw problem(413, err.message, { Connection: 'close' });
    throw err;
  }
}

/** `Link` headers for the ICE servers (RFC 9725 §4.6), TURN credentials included. */
export function iceServerLinks(servers: IceServer[]): string[] {
  const quote = (s: string) => `"${s.replace(/["\\]/g, '')}"`;
  return servers.flatMap((s) =>
    s.urls.map((url) => {
      let link = `<${url}>; rel="ice-server"`;
      if (s.username && s.credential) {
        link += `; username=${quote(s.username)}; credential=${quote(s.credential)}; credential-type="password"`;
      }
      return link;
    }),
  );
}

/** What the resource handler needs from a WHIP or WHEP session. */
export interface WebRtcResource {
  readonly id: string;
  /** Strong ETag of the current ICE session (changes on ICE restart). */
  etag: string;
  /** The remote ICE credentials in use (from the offer or the last restart). */
  remoteIce: { ufrag: string; pwd: string };
  /** The first bundled m-line, which the restart sdpfrag names. */
  readonly bundled: { mid: string; kind: MediaKind };
  restartIce(): Promise<{ iceUfrag: string; icePwd: string; candidates: IceCandidateLike[] }>;
  /** Ends the session: a DELETE on its URL, or its endpoint closing. */
  terminate(reason: TerminateReason): void;
}

/** Why a session is ended from outside: a DELETE on its URL, or the endpoint closing. */
export type TerminateReason = 'delete' | 'shutdown';

export const newEtag = (secret: string) => `"${secret}"`;

/** The 201 of a WHIP or WHEP POST: the SDP answer, where the session lives, and the ICE servers. */
export function sendCreated(res: ServerResponse, answer: string, resource: { location: string; etag: string; iceServers: IceServer[] }): void {
  const headers: Record<string, string | string[]> = {
    ...CORS_HEADERS,
    'Content-Type': 'application/sdp',
    'Content-Length': String(Buffer.byteLength(answer)),
    Location: resource.location,
    ETag: resource.etag,
    'Accept-Patch': 'application/trickle-ice-sdpfrag',
  };
  const links = iceServerLinks(resource.iceServers);
  if (links.length > 0) headers.Link = links;
  res.writeHead(201, headers);
  res.end(answer);
}

/**
 * PATCH / DELETE / GET / OPTIONS on a session URL. PATCH with new ICE credentials is an ICE restart
 * (200 + sdpfrag + new ETag); otherwise it is trickle (204; mediasoup is ICE-lite, so remote
 * candidates need no action: it learns the client's address from its connectivity checks).
 */
export async function handleResource(req: IncomingMessage, res: ServerResponse, resource: WebRtcResource, nextEtag: () => string): Promise<void> {
  switch (req.method) {
    case 'OPTIONS':
      return sendOptions(res, { 'Accept-Patch': 'application/trickle-ice-sdpfrag' });
    case 'GET':
    case 'HEAD':
      return sendEmpty(res, 204);
    case 'DELETE':
      resource.terminate('delete');
      return sendEmpty(res, 200);
    case 'PATCH': {
      const ifMatch = req.headers['if-match'];
      if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== resource.etag) {
        throw problem(412, 'If-Match does not name the current ICE session (its ETag changed)', { ETag: resource.etag });
      }
      const frag = parseSdpFragOr422(await readTyped(req, 'application/trickle-ice-sdpfrag'));
      const restart = frag.iceUfrag !== undefined && (frag.iceUfrag !== resource.remoteIce.ufrag || frag.icePwd !== resource.remoteIce.pwd);
      if (!restart) return sendEmpty(res, 204);
      if (ifMatch === undefined) throw problem(428, 'an ICE restart needs If-Match: "*"');
      const local = await resource.restartIce();
      resource.remoteIce = { ufrag: frag.iceUfrag!, pwd: frag.icePwd! };
      resource.etag = nextEtag();
      const body = writeSdpFrag(local, resource.bundled);
      res.writeHead(200, {
        ...CORS_HEADERS,
        'Content-Type': 'application/trickle-ice-sdpfrag',
        'Content-Length': Buffer.byteLength(body),
        ETag: resource.etag,
      });
      res.end(body);
      return;
    }
    default:
      throw problem(405, `${req.method} is not allowed on a session`, { Allow: 'OPTIONS, GET, PATCH, DELETE' });
  }
}

function parseSdpFragOr422(text: string) {
  try {
    return parseSdpFrag(text);
  } catch (err) {
    if (err instanceof SdpError) throw problem(422, err.message);
    throw err;
  }
}
