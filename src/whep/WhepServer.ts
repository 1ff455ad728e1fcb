// WHEP playback: `POST /whep/<room>/<participant identity>[/<track sid>]` with a join token for that
// room as Bearer (canSubscribe). The viewer's recvonly offer is answered sendonly with consumers of
// the participant's audio and video tracks. A WHEP viewer is not a room participant: it does not
// appear in the room, take a seat, or receive data; it is closed when the tracks or the room go.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { types } from 'mediasoup';
import {
  bearerToken,
  handleResource,
  newEtag,
  pathSegments,
  problem,
  readTyped,
  sendEmpty,
  sendOptions,
  sendCreated,
  sendProblem,
  toProblem,
  type WebRtcResource,
} from '../api/webrtcHttp.ts';
import type { Claims } from '../auth/grants.ts';
import { ApiError } from '../errors.ts';
import { newSecret } from '../ids.ts';
import type { Logger } from '../logger.ts';
import { consumerAnswerMedia, negotiatePlay, parseOffer, viewerRouterCodecs, writeAnswer, type AnswerMedia, type MediaKind } from '../media/sdp.ts';
import { localParameters, restartServerIce } from '../media/webrtcTransport.ts';
import { SfuError } from '../sfu/errors.ts';
import type { IceServer } from '../sfu/ParticipantTypes.ts';
import type { Viewer } from '../sfu/RoomTypes.ts';
import { permissionFromClaims } from '../auth/join.ts';

export const WHEP_PATH = '/whep';
export const PLAY_PATH = '/play';
const PLAY_PAGE = fileURLToPath(new URL('../../templates/play/index.html', import.meta.url));

/** The WHEP player page: /play?room=&identity=&token= (see templates/play). */
export async function servePlayPage(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return sendProblem(res, problem(405, 'GET only', { Allow: 'GET, HEAD' }));
  const html = await readFile(PLAY_PAGE);
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': html.length, 'Cache-Control': 'no-cache' });
  res.end(req.method === 'HEAD' ? undefined : html);
}
const SESSION_SEGMENT = 'session';

interface PlayableTrack {
  readonly info: { sid: string };
  readonly producer: types.Producer;
}

/** WHEP's permission policy: a viewer's token needs the join grant for the room and canSubscribe. */
export function maySubscribe(claims: Claims, room: string): boolean {
  return claims.video?.room === room && claims.video.roomJoin === true && permissionFromClaims(claims).canSubscribe;
}

export interface WhepDeps {
  verify(token: string): Promise<Claims>;
  rooms: {
    liveRoom(name: string):
      | {
          rtpCapabilities: types.RtpCapabilities;
          closed: boolean;
          participant(identity: string): { hidden: boolean; tracks: PlayableTrack[] };
          openViewer(mediaCodecs: types.RtpCodecCapability[], appData: Record<string, unknown>): Promise<Viewer>;
        }
      | undefined;
  };
  iceServers: (identity: string) => IceServer[];
  maxSessions: number;
  log: Logger;
}

/** A viewer must complete DTLS within this, and then never go quiet for longer than VIEWER_IDLE_MS. */
const VIEWER_CONNECT_MS = 30_000;
const VIEWER_IDLE_MS = 30_000;

class WhepSession implements WebRtcResource {
  readonly id = newSecret(128);
  etag = newEtag(newSecret(96));
  remoteIce: { ufrag: string; pwd: string };
  readonly bundled: { mid: string; kind: MediaKind };
  readonly transport: types.WebRtcTransport;
  readonly consumers: types.Consumer[] = [];
  readonly #onClose: () => void;
  #closed = false;
  readonly #watch: NodeJS.Timeout;

  constructor(init: { transport: types.WebRtcTransport; remoteIce: { ufrag: string; pwd: string }; bundled: { mid: string; kind: MediaKind }; onClose: () => void }) {
    this.transport = init.transport;
    this.remoteIce = init.remoteIce;
    this.bundled = init.bundled;
    this.#onClose = init.onClose;
    this.transport.observer.once('close', () => this.terminate());
    this.#watch = this.#watchLiveness();
  }

  /**
   * mediasoup 3.8's ICE-lite has no consent timeout, so a viewer that never connects or vanishes
   * without a DTLS close would hold its Router and a session slot forever. A live viewer keeps
   * sending (STUN consent checks, RTCP receiver reports); silence for VIEWER_IDLE_MS ends it.
   */
  #watchLiveness(): NodeJS.Timeout {
    const created = Date.now();
    let lastBytes = 0;
    let lastChange = created;
    const timer = setInterval(() => {
      this.transport
        .getStats()
        .then((stats) => {
          const bytes = stats.reduce((n, st) => n + (st.bytesReceived ?? 0), 0);
          const now = Date.now();
          if (bytes > lastBytes) {
            lastBytes = bytes;
            lastChange = now;
          }
          if (this.transport.dtlsState !== 'connected' && now - created > VIEWER_CONNECT_MS) this.terminate();
          else if (now - lastChange > VIEWER_IDLE_MS) this.terminate();
        })
        .catch(() => this.terminate());
    }, 5000);
    timer.unref();
    return timer;
  }

  async restartIce() {
    return restartServerIce(this.transport);
  }

  /** Idempotent: DELETE, the tracks or the room going away. */
  terminate(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#watch);
    this.transport.close();
    this.#onClose();
  }
}

export class WhepServer {
  readonly #deps: WhepDeps;
  readonly #sessions = new Map<string, WhepSession>();
  #starting = 0;

  constructor(deps: WhepDeps) {
    this.#deps = deps;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      const parts = pathSegments(url.pathname, WHEP_PATH);
      if (parts.length === 2 && parts[0] === SESSION_SEGMENT) {
        const session = this.#sessions.get(parts[1]!);
        if (!session) throw problem(404, 'no such WHEP session (it ended or never existed)');
        return await handleResource(req, res, session, () => newEtag(newSecret(96)));
      }
      if (parts.length < 2 || parts.length > 3) throw problem(404, 'use /whep/<room>/<participant identity>[/<track sid>]');
      switch (req.method) {
        case 'OPTIONS':
          return sendOptions(res, { 'Accept-Post': 'application/sdp' });
        case 'GET':
        case 'HEAD':
          return sendEmpty(res, 204, req.method === 'HEAD' ? { 'Content-Type': 'application/sdp' } : {});
        case 'POST':
          return await this.#play(req, res, parts[0]!, parts[1]!, parts[2]);
        default:
          throw problem(405, `${req.method} is not allowed on a WHEP endpoint`, { Allow: 'OPTIONS, GET, HEAD, POST' });
      }
    } catch (err) {
      sendProblem(res, toProblem(err, this.#deps.log));
    }
  }

  async #play(req: IncomingMessage, res: ServerResponse, roomName: string, identity: string, trackSid: string | undefined): Promise<void> {
    const token = bearerToken(req);
    if (!token) throw problem(401, 'a join token is required: Authorization: Bearer <token>', { 'WWW-Authenticate': 'Bearer' });
    let claims: Claims;
    try {
      claims = await this.#deps.verify(token);
    } catch (err) {
      if (err instanceof ApiError) throw problem(401, err.message, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
      throw err;
    }
    if (!maySubscribe(claims, roomName)) throw problem(403, `the token does not allow subscribing in room '${roomName}'`);
    // Offers in flight count too: concurrent POSTs must not get past the limit while they await.
    if (this.#sessions.size + this.#starting >= this.#deps.maxSessions) {
      throw problem(503, `the gateway serves at most ${this.#deps.maxSessions} WHEP viewers`, { 'Retry-After': '10' });
    }
    this.#starting++;
    try {
      await this.#start(req, res, claims, roomName, identity, trackSid);
    } finally {
      this.#starting--;
    }
  }

  async #start(req: IncomingMessage, res: ServerResponse, claims: Claims, roomName: string, identity: string, trackSid: string | undefined): Promise<void> {
    const offer = parseOffer(await readTyped(req, 'application/sdp'));
    const room = this.#deps.rooms.liveRoom(roomName);
    if (!room || room.closed) throw problem(404, `room '${roomName}' is not live`);
    const publisher = room.participant(identity);
    // Hidden participants are invisible to subscribers in rooms; WHEP viewers are subscribers.
    if (publisher.hidden) throw problem(404, `participant '${identity}' is not in room '${roomName}'`);
    const tracks = publisher.tracks.filter((t) => !t.producer.closed && (!trackSid || t.info.sid === trackSid));
    if (trackSid && tracks.length === 0) throw problem(404, `track '${trackSid}' is not published by '${identity}'`);
    const plan = negotiatePlay(offer, room.rtpCapabilities);
    const picks = plan.map((m) => ({ m, track: tracks.find((t) => t.producer.kind === m.kind) }));
    if (!picks.some((p) => p.track)) throw problem(404, `'${identity}' publishes no ${plan.map((m) => m.kind).join(' or ')} track`);

    const sending = picks.filter((p): p is { m: (typeof plan)[number]; track: PlayableTrack } => p.track !== undefined);
    const mediaCodecs = viewerRouterCodecs(sending.map((p) => ({ media: p.m, sourceCodec: p.track.producer.rtpParameters.codecs[0]! })));
    // A Router per viewer, fed from the room's: consumers then send the viewer's payload types.
    const viewer = await room.openViewer(mediaCodecs, { whep: true, room: roomName }).catch((err: unknown) => {
      if (err instanceof SfuError && err.code === 'invalid_argument') throw problem(422, `the offer's payload types cannot be used together: ${err.message}`);
      throw err;
    });
    const transport = viewer.transport;
    const session = new WhepSession({
      transport,
      remoteIce: { ufrag: offer.iceUfrag, pwd: offer.icePwd },
      bundled: { mid: plan[0]!.mid, kind: plan[0]!.kind },
      onClose: () => this.#sessions.delete(session.id),
    });
    this.#sessions.set(session.id, session);
    try {
      await transport.connect({ dtlsParameters: { role: 'client', fingerprints: offer.fingerprints as types.DtlsFingerprint[] } });
      const streamId = `${identity}`;
      const answerMedia: AnswerMedia[] = [];
      for (const { m, track } of picks) {
        if (!track) {
          // Nothing of this kind to send: the m-line stays, inactive (the offer is still answered whole).
          const c = m.codecs[0]!;
          answerMedia.push({ mid: m.mid, kind: m.kind, direction: 'inactive', codecs: [{ ...c, parameters: {}, rtcpFeedback: [] }], extensions: [], recvRids: [] });
          continue;
        }
        const consumer = await viewer.consume(track, m.rtpCapabilities);
        session.consumers.push(consumer);
        // The viewer stays while any of its tracks does.
        consumer.on('producerclose', () => {
          if (session.consumers.every((c) => c.closed || c === consumer)) session.terminate();
        });
        answerMedia.push(consumerAnswerMedia(m.mid, m.kind, consumer.rtpParameters, streamId, track.info.sid));
      }
      // A keyframe as soon as DTLS is up, so the picture starts without waiting for the next GOP.
      transport.on('dtlsstatechange', (state) => {
        if (state === 'connected') for (const c of session.consumers) if (c.kind === 'video') c.requestKeyFrame().catch(() => undefined);
        if (state === 'failed' || state === 'closed') session.terminate();
      });
      const answer = writeAnswer(offer, answerMedia, localParameters(transport), String(Date.now()));
      const location = `${WHEP_PATH}/${SESSION_SEGMENT}/${session.id}`;
      sendCreated(res, answer, { location, etag: session.etag, iceServers: this.#deps.iceServers(claims.sub ?? 'whep') });
      this.#deps.log.info({ room: roomName, participant: identity, tracks: session.consumers.length }, 'WHEP viewer started');
    } catch (err) {
      session.terminate();
      throw err;
    }
  }

  close(): void {
    for (const s of [...this.#sessions.values()]) s.terminate();
  }
}
