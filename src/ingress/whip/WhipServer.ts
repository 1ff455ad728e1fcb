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
import { WebRtcEndpoint, WebRtcSession } from '../../api/webrtcEndpoint.ts';
import { bearerToken, problem, readTyped, sendCreated, toProblem, type TerminateReason } from '../../api/webrtcHttp.ts';
import { ApiError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import { ROUTER_MEDIA_CODECS } from '../../media/codecs.ts';
import { negotiatePublish, parseOffer, writeAnswer, type MediaKind } from '../../media/sdp.ts';
import { localParameters, restartServerIce, watchTraffic } from '../../media/webrtcTransport.ts';
import type { IceServer } from '../../sfu/ParticipantTypes.ts';
import type { IngressSession } from '../IngressSessions.ts';

export const WHIP_PATH = '/w';

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

class WhipSession extends WebRtcSession {
  readonly streamKey: string;
  readonly ingress: IngressSession;
  transport: types.WebRtcTransport | undefined;
  #stopWatching: (() => void) | undefined;

  constructor(init: { streamKey: string; ingress: IngressSession; offer: { iceUfrag: string; icePwd: string }; bundled: { mid: string; kind: MediaKind } }) {
    super(init.offer, init.bundled);
    this.streamKey = init.streamKey;
    this.ingress = init.ingress;
  }

  async restartIce() {
    if (!this.transport || this.transport.closed) throw problem(404, 'the session has ended');
    return restartServerIce(this.transport);
  }

  terminate(reason: TerminateReason): void {
    this.ingress.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, reason === 'delete' ? 'WHIP DELETE' : 'shutdown');
  }

  /** Follows the RTP counters: PUBLISHING on the first packets, INACTIVE/ERROR when they stop or never come. */
  watch(transport: types.WebRtcTransport, tracks: TrackInfo[], kinds: Map<MediaKind, string>): void {
    let publishing = false;
    this.#stopWatching = watchTraffic(transport, {
      intervalMs: WATCH_INTERVAL_MS,
      bytes: (stats) => stats.reduce((n, s) => n + (s.rtpBytesReceived ?? 0), 0),
      onTick: ({ grew, sinceStart, sinceChange }) => {
        if (grew) {
          if (!publishing) {
            publishing = true;
            this.ingress.publishing(tracks);
            this.ingress.updateInput({
              ...(kinds.has('video') ? { video: { mimeType: kinds.get('video')! } } : {}),
              ...(kinds.has('audio') ? { audio: { mimeType: kinds.get('audio')! } } : {}),
            });
          }
        } else if (!publishing && sinceStart > FIRST_MEDIA_MS) {
          this.ingress.end(IngressState_Status.ENDPOINT_ERROR, `no media received within ${FIRST_MEDIA_MS / 1000} s (ICE or DTLS did not complete)`);
        } else if (publishing && sinceChange > STALL_MS) {
          this.ingress.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, `no media for ${STALL_MS / 1000} s`);
        }
      },
      // The transport closed under us: the session is ending anyway.
      onGone: () => this.stopWatching(),
    });
  }

  stopWatching(): void {
    this.#stopWatching?.();
  }
}

/**
 * WHIP's part of the WebRTC-over-HTTP endpoint: the stream key (Bearer or path) authorizes a POST,
 * which starts the ingress session and publishes the offer's tracks into its room.
 */
export class WhipServer extends WebRtcEndpoint<WhipSession> {
  readonly #deps: WhipDeps;

  constructor(deps: WhipDeps) {
    super({ path: WHIP_PATH, name: 'WHIP', maxSessions: deps.maxSessions, fullDetail: `the gateway takes at most ${deps.maxSessions} WHIP publishers`, target: { min: 0, max: 1, hint: 'no such WHIP resource' }, log: deps.log });
    this.#deps = deps;
  }

  protected override authorizeResource(req: IncomingMessage, session: WhipSession): void {
    const key = bearerToken(req);
    // The session URL is itself a 128-bit secret; a token, when sent, must be the session's key.
    if (key !== undefined && key !== session.streamKey) throw problem(401, 'the Bearer token is not the stream key of this session');
  }

  #authorise(key: string | undefined): IngressInfo {
    const unauthorised = (detail: string) => problem(401, detail, { 'WWW-Authenticate': 'Bearer' });
    if (!key) throw unauthorised('a stream key is required: Authorization: Bearer <stream key>, or POST /w/<stream key>');
    const info = this.#deps.streamKeys.byStreamKey(key);
    if (!info || info.inputType !== IngressInput.WHIP_INPUT) throw unauthorised('unknown stream key');
    if (info.enabled === false) throw unauthorised('this ingress is disabled');
    return info;
  }

  /** POST /w or /w/<stream key>. */
  protected async post(req: IncomingMessage, res: ServerResponse, [pathKey]: string[]): Promise<void> {
    const info = this.#authorise(bearerToken(req) ?? pathKey);
    const key = info.streamKey;
    // A publisher replacing its own live session takes no new place.
    const release = this.admit(this.#deps.sessions.live(info.ingressId) !== undefined);
    let sdp: string;
    try {
      sdp = await readTyped(req, 'application/sdp');
    } finally {
      release();
    }
    const offer = parseOffer(sdp);
    const plan = negotiatePublish(offer, ROUTER_MEDIA_CODECS);

    const ingress = this.#deps.sessions.start(info, 'whip');
    const session = new WhipSession({ streamKey: key, ingress, offer, bundled: plan[0]! });
    const forget = this.add(session);
    ingress.once('end', () => {
      session.stopWatching();
      session.transport?.close();
      forget();
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
      session.watch(transport, tracks, kinds);
      const location = this.location(session);
      sendCreated(res, answer, { location, etag: session.etag, iceServers: this.#deps.iceServers(info.participantIdentity) });
      // The session URL is a capability: the log names only its first characters.
      log.info({ whip: `${location.slice(0, -session.id.length)}${session.id.slice(0, 6)}`, tracks: tracks.map((t) => t.sid) }, 'WHIP publisher accepted');
    } catch (err) {
      const p = toProblem(err, log);
      ingress.end(IngressState_Status.ENDPOINT_ERROR, p.message);
      throw p;
    }
  }
}
