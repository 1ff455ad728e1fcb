// WHIP (RFC 9725) ingress: `POST /w` with `Authorization: Bearer <stream key>` (OBS) or
// `POST /w/<stream key>`. The publisher becomes the ingress participant of the ingress's room,
// through IngressSessions like every ingest protocol; its RTP is forwarded without transcoding.
//
// State: BUFFERING when the offer is accepted, PUBLISHING when the first RTP arrives (not merely
// when Producers exist: a publisher whose ICE/DTLS never completes never publishes), INACTIVE on
// DELETE or when the media stops, ERROR when DTLS fails or no media arrives in time.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { IngressInput, IngressState_Status, type IngressInfo, type TrackInfo } from '@livekit/protocol';
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
} from '../../api/webrtcHttp.ts';
import { ApiError } from '../../errors.ts';
import { newSecret } from '../../ids.ts';
import type { Logger } from '../../logger.ts';
import { ROUTER_MEDIA_CODECS } from '../../media/codecs.ts';
import { negotiatePublish, parseOffer, writeAnswer, type MediaKind } from '../../media/sdp.ts';
import { localParameters, restartServerIce } from '../../media/webrtcTransport.ts';
import type { IceServer } from '../../sfu/ParticipantTypes.ts';
import type { IngressSession } from '../IngressSessions.ts';

export const WHIP_PATH = '/w';
const SESSION_SEGMENT = 'session';

/** What the WHIP server needs from the rest of the gateway (narrow, so tests could fake it). */
export interface WhipDeps {
  streamKeys: { byStreamKey(key: string): IngressInfo | undefined };
  sessions: { start(info: IngressInfo, protocol: 'whip'): IngressSession; live(ingressId: string): IngressSession | undefined };
  rooms: { liveRoom(name: string): object | undefined };
  iceServers: (identity: string) => IceServer[];
  /** Concurrent WHIP publishers; more get 503 + Retry-After. */
  maxSessions: number;
  log: Logger;
}

/** Media timeouts: no RTP this long after the answer is an error; a stall this long ends the stream. */
const FIRST_MEDIA_MS = 30_000;
const STALL_MS = 20_000;
const WATCH_INTERVAL_MS = 500;

class WhipSession implements WebRtcResource {
  readonly id = newSecret(128);
  etag = newEtag(newSecret(96));
  remoteIce: { ufrag: string; pwd: string };
  readonly bundled: { mid: string; kind: MediaKind };
  readonly streamKey: string;
  readonly ingress: IngressSession;
  transport: types.WebRtcTransport | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(init: { streamKey: string; ingress: IngressSession; remoteIce: { ufrag: string; pwd: string }; bundled: { mid: string; kind: MediaKind } }) {
    this.streamKey = init.streamKey;
    this.ingress = init.ingress;
    this.remoteIce = init.remoteIce;
    this.bundled = init.bundled;
  }

  async restartIce() {
    if (!this.transport || this.transport.closed) throw problem(404, 'the session has ended');
    return restartServerIce(this.transport);
  }

  terminate(): void {
    this.ingress.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, 'WHIP DELETE');
  }

  /** Follows the RTP counters: PUBLISHING on the first packets, INACTIVE/ERROR when they stop or never come. */
  watch(tracks: TrackInfo[], kinds: Map<MediaKind, string>): void {
    const started = Date.now();
    let lastBytes = 0;
    let lastChange = started;
    let publishing = false;
    this.#timer = setInterval(() => {
      const transport = this.transport;
      if (!transport || transport.closed) return this.stopWatching();
      transport
        .getStats()
        .then((stats) => {
          const bytes = stats.reduce((n, s) => n + (s.rtpBytesReceived ?? 0), 0);
          const now = Date.now();
          if (bytes > lastBytes) {
            lastBytes = bytes;
            lastChange = now;
            if (!publishing) {
              publishing = true;
              this.ingress.publishing(tracks);
              this.ingress.updateInput({
                ...(kinds.has('video') ? { video: { mimeType: kinds.get('video')! } } : {}),
                ...(kinds.has('audio') ? { audio: { mimeType: kinds.get('audio')! } } : {}),
              });
            }
          } else if (!publishing && now - started > FIRST_MEDIA_MS) {
            this.ingress.end(IngressState_Status.ENDPOINT_ERROR, `no media received within ${FIRST_MEDIA_MS / 1000} s (ICE or DTLS did not complete)`);
          } else if (publishing && now - lastChange > STALL_MS) {
            this.ingress.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, `no media for ${STALL_MS / 1000} s`);
          }
        })
        .catch(() => this.stopWatching()); // transport closed under us: the session is ending anyway
    }, WATCH_INTERVAL_MS);
    this.#timer.unref();
  }

  stopWatching(): void {
    clearInterval(this.#timer);
  }
}

export class WhipServer {
  readonly #deps: WhipDeps;
  readonly #log: Logger;
  readonly #sessions = new Map<string, WhipSession>();
  #reading = 0;
  #closed = false;

  constructor(deps: WhipDeps) {
    this.#deps = deps;
    this.#log = deps.log;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Handles every request under /w. Never throws: failures become problem+json. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      const parts = pathSegments(url.pathname, WHIP_PATH);
      if (parts.length === 2 && parts[0] === SESSION_SEGMENT) return await this.#resource(req, res, parts[1]!);
      if (parts.length > 1) throw problem(404, 'no such WHIP resource');
      const pathKey = parts[0];
      switch (req.method) {
        case 'OPTIONS':
          return sendOptions(res, { 'Accept-Post': 'application/sdp' });
        case 'GET':
        case 'HEAD':
          return sendEmpty(res, 204);
        case 'POST':
          return await this.#publish(req, res, pathKey);
        default:
          throw problem(405, `${req.method} is not allowed on the WHIP endpoint`, { Allow: 'OPTIONS, GET, POST' });
      }
    } catch (err) {
      sendProblem(res, toProblem(err, this.#log));
    }
  }

  async #resource(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const session = this.#sessions.get(id);
    if (!session) throw problem(404, 'no such WHIP session (it ended or never existed)');
    if (req.method !== 'OPTIONS') {
      const key = bearerToken(req);
      // The session URL is itself a 128-bit secret; a token, when sent, must be the session's key.
      if (key !== undefined && key !== session.streamKey) throw problem(401, 'the Bearer token is not the stream key of this session');
    }
    await handleResource(req, res, session, () => newEtag(newSecret(96)));
  }

  #authorise(key: string | undefined): IngressInfo {
    const unauthorised = (detail: string) => problem(401, detail, { 'WWW-Authenticate': 'Bearer' });
    if (!key) throw unauthorised('a stream key is required: Authorization: Bearer <stream key>, or POST /w/<stream key>');
    const info = this.#deps.streamKeys.byStreamKey(key);
    if (!info || info.inputType !== IngressInput.WHIP_INPUT) throw unauthorised('unknown stream key');
    if (info.enabled === false) throw unauthorised('this ingress is disabled');
    return info;
  }

  async #publish(req: IncomingMessage, res: ServerResponse, pathKey: string | undefined): Promise<void> {
    if (this.#closed) throw problem(503, 'the gateway is shutting down', { 'Retry-After': '5' });
    const info = this.#authorise(bearerToken(req) ?? pathKey);
    const key = info.streamKey;
    const replacing = this.#deps.sessions.live(info.ingressId) !== undefined;
    // Offers being read count too: concurrent POSTs must not get past the limit while they await.
    if (!replacing && this.#sessions.size + this.#reading >= this.#deps.maxSessions) {
      throw problem(503, `the gateway takes at most ${this.#deps.maxSessions} WHIP publishers`, { 'Retry-After': '10' });
    }
    this.#reading++;
    let sdp: string;
    try {
      sdp = await readTyped(req, 'application/sdp');
    } finally {
      this.#reading--;
    }
    const offer = parseOffer(sdp);
    const plan = negotiatePublish(offer, ROUTER_MEDIA_CODECS);

    const ingress = this.#deps.sessions.start(info, 'whip');
    const session = new WhipSession({
      streamKey: key,
      ingress,
      remoteIce: { ufrag: offer.iceUfrag, pwd: offer.icePwd },
      bundled: { mid: plan[0]!.mid, kind: plan[0]!.kind },
    });
    this.#sessions.set(session.id, session);
    ingress.once('end', () => {
      session.stopWatching();
      session.transport?.close();
      this.#sessions.delete(session.id);
    });
    const log = ingress.log;
    try {
      const participant = await ingress.joinRoom();
      if (!this.#deps.rooms.liveRoom(info.roomName)) throw new Error('the room closed while the publisher joined');
      const transport = await participant.openWebRtcSend({ whip: session.id, ingress: info.ingressId });
      session.transport = transport;
      if (ingress.ended) throw problem(409, 'the session was replaced while it started');
      transport.on('dtlsstatechange', (state) => {
        if (state === 'failed') ingress.end(IngressState_Status.ENDPOINT_ERROR, 'DTLS handshake failed');
      });
      await transport.connect({ dtlsParameters: { role: 'client', fingerprints: offer.fingerprints as types.DtlsFingerprint[] } });
      const tracks: TrackInfo[] = [];
      const kinds = new Map<MediaKind, string>();
      for (const m of plan) {
        const source = m.kind === 'audio' ? 'microphone' : 'camera';
        const name = (m.kind === 'audio' ? info.audio?.name : info.video?.name) || source;
        const { trackSid } = await participant
          .publishTrack({ transportId: transport.id, kind: m.kind, rtpParameters: m.rtpParameters as unknown as Record<string, unknown>, source, name })
          .catch((err: unknown) => {
            // The worker checks more than the parser (SSRC/MID clashes) and says little: it is still the offer.
            if (err instanceof ApiError && err.code !== 'invalid_argument') throw err;
            throw problem(422, `m-line ${m.mid} (${m.kind}): the media server refused its RTP parameters${(err as Error).message.trim().startsWith('[') ? '' : `: ${(err as Error).message}`}`);
          });
        const track = participant.track(trackSid);
        if (track) tracks.push(track.info);
        kinds.set(m.kind, m.rtpParameters.codecs[0]!.mimeType);
      }
      const answer = writeAnswer(
        offer,
        plan.map((m) => m.answer),
        localParameters(transport),
        String(Date.now()),
      );
      session.watch(tracks, kinds);
      const location = `${WHIP_PATH}/${SESSION_SEGMENT}/${session.id}`;
      sendCreated(res, answer, { location, etag: session.etag, iceServers: this.#deps.iceServers(info.participantIdentity) });
      log.info({ whip: location.slice(0, WHIP_PATH.length + SESSION_SEGMENT.length + 8), tracks: tracks.map((t) => t.sid) }, 'WHIP publisher accepted');
    } catch (err) {
      const p = toProblem(err, log);
      ingress.end(IngressState_Status.ENDPOINT_ERROR, p.message);
      throw p;
    }
  }

  /** Ends every WHIP session (the ingress sessions end with them). */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#sessions.values()]) s.ingress.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, 'shutdown');
  }
}
