// WHEP playback: `POST /whep/<room>/<participant identity>[/<track sid>]` with a join token for that
// room as Bearer (canSubscribe). The viewer's recvonly offer is answered sendonly with consumers of
// the participant's audio and video tracks. A WHEP viewer is not a room participant: it does not
// appear in the room, take a seat, or receive data; it is closed when the tracks or the room go.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { types } from 'mediasoup';
import { WebRtcEndpoint, WebRtcSession } from '../api/webrtcEndpoint.ts';
import { bearerToken, problem, readTyped, sendCreated, sendProblem } from '../api/webrtcHttp.ts';
import type { Claims } from '../auth/grants.ts';
import { authorize } from '../auth/authorize.ts';
import { ApiError, permissionDenied } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { consumerAnswerMedia, negotiatePlay, parseOffer, viewerRouterCodecs, writeAnswer, type AnswerMedia, type MediaKind } from '../media/sdp.ts';
import { localParameters, restartServerIce, watchTraffic } from '../media/webrtcTransport.ts';
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

class WhepSession extends WebRtcSession {
  readonly transport: types.WebRtcTransport;
  readonly consumers: types.Consumer[] = [];
  readonly #onClose: () => void;
  #closed = false;
  readonly #stopWatching: () => void;

  constructor(init: { transport: types.WebRtcTransport; offer: { iceUfrag: string; icePwd: string }; bundled: { mid: string; kind: MediaKind }; onClose: () => void }) {
    super(init.offer, init.bundled);
    this.transport = init.transport;
    this.#onClose = init.onClose;
    this.transport.observer.once('close', () => this.terminate());
    // A viewer that never connects or vanishes without a DTLS close would hold its Router and a
    // session slot forever. A live viewer keeps sending (STUN consent checks, RTCP receiver
    // reports); silence for VIEWER_IDLE_MS ends it.
    this.#stopWatching = watchTraffic(this.transport, {
      intervalMs: 5000,
      bytes: (stats) => stats.reduce((n, st) => n + (st.bytesReceived ?? 0), 0),
      onTick: ({ sinceStart, sinceChange }) => {
        if (this.transport.dtlsState !== 'connected' && sinceStart > VIEWER_CONNECT_MS) this.terminate();
        else if (sinceChange > VIEWER_IDLE_MS) this.terminate();
      },
      onGone: () => this.terminate(),
    });
  }

  async restartIce() {
    return restartServerIce(this.transport);
  }

  /** Idempotent: DELETE, shutdown, the tracks or the room going away. */
  terminate(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopWatching();
    this.transport.close();
    this.#onClose();
  }
}

/**
 * WHEP's part of the WebRTC-over-HTTP endpoint: a join token with canSubscribe authorizes a POST,
 * which opens a viewer of one participant's tracks.
 */
export class WhepServer extends WebRtcEndpoint<WhepSession> {
  readonly #deps: WhepDeps;

  constructor(deps: WhepDeps) {
    super({ path: WHEP_PATH, name: 'WHEP', maxSessions: deps.maxSessions, fullDetail: `the gateway serves at most ${deps.maxSessions} WHEP viewers`, target: { min: 2, max: 3, hint: 'use /whep/<room>/<participant identity>[/<track sid>]' }, log: deps.log });
    this.#deps = deps;
  }

  /** POST /whep/<room>/<participant identity>[/<track sid>]. */
  protected async post(req: IncomingMessage, res: ServerResponse, parts: string[]): Promise<void> {
    const [roomName, identity, trackSid] = [parts[0]!, parts[1]!, parts[2]];
    const token = bearerToken(req);
    if (!token) throw problem(401, 'a join token is required: Authorization: Bearer <token>', { 'WWW-Authenticate': 'Bearer' });
    const claims = await authorize(this.#deps, token, {
      missing: 'a join token is required',
      grant: (c) => {
        if (!maySubscribe(c, roomName)) throw permissionDenied(`the token does not allow subscribing in room '${roomName}'`);
      },
    }).catch((err: unknown) => {
      // A token that did not verify says why, and RFC 6750 names it so a player can refresh it.
      if (err instanceof ApiError && err.code === 'unauthenticated') throw problem(401, err.message, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
      throw err;
    });
    const release = this.admit();
    try {
      await this.#start(req, res, claims, roomName, identity, trackSid);
    } finally {
      release();
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
    let forget = () => {};
    const session = new WhepSession({ transport, offer, bundled: plan[0]!, onClose: () => forget() });
    forget = this.add(session);
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
      const location = this.location(session);
      sendCreated(res, answer, { location, etag: session.etag, iceServers: this.#deps.iceServers(claims.sub ?? 'whep') });
      this.#deps.log.info({ room: roomName, participant: identity, tracks: session.consumers.length }, 'WHEP viewer started');
    } catch (err) {
      session.terminate();
      throw err;
    }
  }
}
