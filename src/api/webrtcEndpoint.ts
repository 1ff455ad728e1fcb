// The one WebRTC-over-HTTP endpoint that WHIP (RFC 9725) and WHEP configure. What both protocols
// share lives here once: the session table and its `<path>/session/<id>` URLs, the resource
// methods (ETag'd PATCH for trickle and ICE restart, DELETE, GET, OPTIONS), the POST admission
// (closed → 503, concurrent sessions → 503 + Retry-After) and the mapping of every failure to a
// problem+json body. What differs is each subclass's `post`: how it authorizes and what it creates.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { newSecret } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { MediaKind } from '../media/sdp.ts';
import { pathSegments } from '../http/body.ts';
import { handleResource, newEtag, problem, sendEmpty, sendOptions, sendProblem, toProblem, type TerminateReason, type WebRtcResource } from './webrtcHttp.ts';

const SESSION_SEGMENT = 'session';

/** The resource fields every session starts with; the edge adds its media. */
export abstract class WebRtcSession implements WebRtcResource {
  /** Also the session URL's last segment: 128 bits, so the URL is itself a capability. */
  readonly id = newSecret(128);
  etag = newEtag(newSecret(96));
  remoteIce: { ufrag: string; pwd: string };
  readonly bundled: { mid: string; kind: MediaKind };

  constructor(offer: { iceUfrag: string; icePwd: string }, bundled: { mid: string; kind: MediaKind }) {
    this.remoteIce = { ufrag: offer.iceUfrag, pwd: offer.icePwd };
    this.bundled = { mid: bundled.mid, kind: bundled.kind };
  }

  abstract restartIce(): ReturnType<WebRtcResource['restartIce']>;
  abstract terminate(reason: TerminateReason): void;
}

/** A place counted against the session limit while a POST awaits; released once, whatever happens. */
export type Admission = () => void;

export interface WebRtcEndpointOptions {
  /** The path prefix, e.g. `/w` or `/whep`. */
  path: string;
  /** The protocol's name in problem details ("no such WHIP session"). */
  name: string;
  /** Concurrent sessions (POSTs in flight included); more get 503 + Retry-After. */
  maxSessions: number;
  /** The 503 detail when the endpoint is full. */
  fullDetail: string;
  /** How many path segments a POST target has (WHIP: an optional stream key; WHEP: room, identity, optional track); others get 404 with `hint`. */
  target: { min: number; max: number; hint: string };
  log: Logger;
}

/**
 * The endpoint; WHIP and WHEP extend it with the parts that differ: how a session URL is
 * authorized and what a POST creates.
 */
export abstract class WebRtcEndpoint<S extends WebRtcSession> {
  readonly #opts: WebRtcEndpointOptions;
  readonly #sessions = new Map<string, S>();
  /** POSTs holding a place while they await (reading the offer, opening media). */
  #pending = 0;
  #closed = false;

  constructor(opts: WebRtcEndpointOptions) {
    this.#opts = opts;
  }

  /**
   * A POST: authorizes, takes a place with `admit()` while it awaits, creates the session, `add`s
   * it and answers 201 (`sendCreated`). Anything it throws becomes a problem+json answer.
   */
  protected abstract post(req: IncomingMessage, res: ServerResponse, parts: string[]): Promise<void>;

  /** Checked on every request to a session URL except OPTIONS (which carries no credentials); the URL alone is enough by default. */
  protected authorizeResource(_req: IncomingMessage, _session: S): void {}

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** The session URL of `session` (the 201's Location). */
  protected location(session: S): string {
    return `${this.#opts.path}/${SESSION_SEGMENT}/${session.id}`;
  }

  /** Handles every request under the path. Never throws: failures become problem+json. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      const parts = pathSegments(url.pathname, this.#opts.path);
      if (parts.length === 2 && parts[0] === SESSION_SEGMENT) return await this.#resource(req, res, parts[1]!);
      const { min, max, hint } = this.#opts.target;
      if (parts.length < min || parts.length > max) throw problem(404, hint);
      switch (req.method) {
        case 'OPTIONS':
          return sendOptions(res, { 'Accept-Post': 'application/sdp' });
        case 'GET':
        case 'HEAD':
          return sendEmpty(res, 204, req.method === 'HEAD' ? { 'Content-Type': 'application/sdp' } : {});
        case 'POST':
          if (this.#closed) throw problem(503, 'the gateway is shutting down', { 'Retry-After': '5' });
          return await this.post(req, res, parts);
        default:
          throw problem(405, `${req.method} is not allowed on the ${this.#opts.name} endpoint`, { Allow: 'OPTIONS, GET, HEAD, POST' });
      }
    } catch (err) {
      sendProblem(res, toProblem(err, this.#opts.log));
    }
  }

  async #resource(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const session = this.#sessions.get(id);
    if (!session) throw problem(404, `no such ${this.#opts.name} session (it ended or never existed)`);
    if (req.method !== 'OPTIONS') this.authorizeResource(req, session);
    await handleResource(req, res, session, () => newEtag(newSecret(96)));
  }

  /**
   * Takes a place against the session limit for a POST that is about to await, so concurrent
   * POSTs cannot all pass the check before any of them is added. `exempt` skips the check (a
   * publisher replacing its own session) but still counts the place.
   */
  protected admit(exempt = false): Admission {
    if (!exempt && this.#sessions.size + this.#pending >= this.#opts.maxSessions) {
      throw problem(503, this.#opts.fullDetail, { 'Retry-After': '10' });
    }
    this.#pending++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#pending--;
    };
  }

  /** Makes the session reachable at its URL; the returned function forgets it (call it when it ends). */
  protected add(session: S): () => void {
    this.#sessions.set(session.id, session);
    return () => {
      if (this.#sessions.get(session.id) === session) this.#sessions.delete(session.id);
    };
  }

  /** Refuses new POSTs and ends every session. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const s of [...this.#sessions.values()]) s.terminate('shutdown');
    }
    return Promise.resolve();
  }
}
