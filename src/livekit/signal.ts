// LiveKit's client signaling (livekit_rtc.proto, v0 with two PeerConnections) translated to and from
// roomgate's room layer. Pure: protobuf in, plain decisions out, and protobuf responses built from
// the room's ParticipantInfo/TrackInfo. The WebSocket glue is LiveKitSignaling.ts.
import {
  AddTrackRequest,
  ClientConfiguration,
  ClientConfigSetting,
  Codec,
  ConnectionQuality,
  ConnectionQualityInfo,
  DisconnectReason,
  ICEServer,
  JoinResponse,
  LeaveRequest,
  LeaveRequest_Action,
  ParticipantInfo,
  ParticipantInfo_State,
  RequestResponse,
  RequestResponse_Reason,
  ServerInfo,
  ServerInfo_Edition,
  SignalRequest,
  SignalResponse,
  SpeakerInfo,
  TrackSource,
  TrackType,
  VideoLayer,
  VideoQuality,
  type Room as RoomInfo,
  type TrackInfo,
} from '@livekit/protocol';
import { ApiError } from '../errors.ts';
import type { ActiveSpeaker, IceServer, LeaveReason, TrackSourceName } from '../sfu/ParticipantTypes.ts';

/** LiveKit's client protocol version roomgate speaks (livekit-client 2.x sends 16 or 17). */
export const LIVEKIT_PROTOCOL = 17;
/** Seconds; both must be non-zero (a zero interval never pings in JS and panics in the Rust SDK). */
export const PING_INTERVAL_S = 5;
export const PING_TIMEOUT_S = 15;
/** Largest signaling frame accepted; SDP with many m-lines stays far below. */
export const MAX_FRAME_BYTES = 256 * 1024;

export type SignalResponseMessage = Exclude<SignalResponse['message'], { case: undefined }>;
export type SignalRequestMessage = Exclude<SignalRequest['message'], { case: undefined }>;

/**
 * Whether an upgrade at /rtc is a LiveKit client: its SDKs always send `sdk` and `protocol`
 * (or, like rtc-node, the token as `Authorization: Bearer`); roomgate's SDK sends neither.
 */
export function isLiveKitUpgrade(url: URL, authorization: string | undefined): boolean {
  return url.searchParams.has('sdk') || url.searchParams.has('protocol') || /^Bearer\s+\S/i.test(authorization ?? '');
}

/** The join token: `access_token` in the query (JS) or `Authorization: Bearer` (Rust SDKs). */
export function tokenFrom(url: URL, authorization: string | undefined): string | undefined {
  const q = url.searchParams.get('access_token');
  if (q) return q;
  const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
  return m?.[1];
}

/** A binary frame as a request; anything else is a `malformed` error naming the problem. */
export function decodeRequest(frame: Buffer | Uint8Array, isBinary: boolean): SignalRequestMessage {
  if (!isBinary) throw new ApiError('malformed', 'LiveKit signaling frames are binary protobuf SignalRequest messages');
  if (frame.length > MAX_FRAME_BYTES) throw new ApiError('malformed', `signal request larger than ${MAX_FRAME_BYTES} bytes`);
  let req: SignalRequest;
  try {
    req = SignalRequest.fromBinary(frame);
  } catch (err) {
    throw new ApiError('malformed', `signal request is not a valid SignalRequest: ${(err as Error).message}`);
  }
  if (req.message.case === undefined) throw new ApiError('malformed', 'signal request carries no known message (unknown field or empty)');
  return req.message;
}

export function encodeResponse(message: SignalResponseMessage): Uint8Array {
  return new SignalResponse({ message } as SignalResponse).toBinary();
}

const SOURCE_NAME: Partial<Record<TrackSource, TrackSourceName>> = {
  [TrackSource.CAMERA]: 'camera',
  [TrackSource.MICROPHONE]: 'microphone',
  [TrackSource.SCREEN_SHARE]: 'screen_share',
  [TrackSource.SCREEN_SHARE_AUDIO]: 'screen_share_audio',
};

/** Codecs a publisher may send here: what the rooms' Routers carry. */
const PUBLISH_CODECS: Record<'audio' | 'video', string[]> = { audio: ['opus'], video: ['vp8', 'h264'] };

/** enabled_publish_codecs: lets clients fall back from a codec we cannot take (VP9, AV1) to VP8. */
export const ENABLED_PUBLISH_CODECS = [
  new Codec({ mime: 'audio/opus' }),
  new Codec({ mime: 'video/VP8' }),
  new Codec({ mime: 'video/H264' }),
];

export interface PendingTrack {
  cid: string;
  kind: 'audio' | 'video';
  source: TrackSourceName;
  name: string;
  muted: boolean;
  width: number;
  height: number;
  layers: VideoLayer[];
}

/**
 * An add_track as the track the next publisher offer will carry. The source defaults by kind
 * (camera/microphone) like LiveKit; a codec the rooms cannot carry is refused here, before the
 * client negotiates it.
 */
export function pendingTrack(req: AddTrackRequest): PendingTrack {
  if (!req.cid || req.cid.length > 256) throw new ApiError('invalid_argument', 'add_track: cid is required (at most 256 characters)');
  const kind = req.type === TrackType.AUDIO ? 'audio' : req.type === TrackType.VIDEO ? 'video' : undefined;
  if (!kind) throw new ApiError('invalid_argument', `add_track: track type ${TrackType[req.type] ?? req.type} cannot be published (audio or video only)`);
  const source = req.source === TrackSource.UNKNOWN ? (kind === 'audio' ? 'microphone' : 'camera') : SOURCE_NAME[req.source];
  if (!source) throw new ApiError('invalid_argument', `add_track: source ${TrackSource[req.source] ?? req.source} is not supported`);
  for (const c of req.simulcastCodecs) {
    const codec = c.codec.toLowerCase();
    if (codec && !PUBLISH_CODECS[kind].includes(codec)) {
      throw new ApiError(
        'invalid_argument',
        `add_track: codec '${c.codec}' is not supported for ${kind} (supported: ${PUBLISH_CODECS[kind].join(', ')})`,
      );
    }
  }
  return {
    cid: req.cid,
    kind,
    source,
    name: req.name.slice(0, 256),
    muted: req.muted,
    width: Math.min(req.width, 16384),
    height: Math.min(req.height, 16384),
    layers: kind === 'video' ? req.layers.slice(0, 4).map((l) => l.clone()) : [],
  };
}

export function iceServers(servers: IceServer[]): ICEServer[] {
  return servers.map((s) => new ICEServer({ urls: s.urls, username: s.username ?? '', credential: s.credential ?? '' }));
}

export function serverInfo(nodeId: string): ServerInfo {
  return new ServerInfo({ edition: ServerInfo_Edition.Standard, version: '1.9.0', protocol: LIVEKIT_PROTOCOL, nodeId, region: '' });
}

export function joinResponse(args: {
  room: RoomInfo;
  participant: ParticipantInfo;
  others: ParticipantInfo[];
  iceServers: IceServer[];
  nodeId: string;
}): JoinResponse {
  return new JoinResponse({
    room: args.room,
    participant: args.participant,
    otherParticipants: args.others,
    serverVersion: '1.9.0',
    serverInfo: serverInfo(args.nodeId),
    iceServers: iceServers(args.iceServers),
    // The server offers the subscriber PeerConnection, which carries server → client data too
    // (mediasoup 3.8.4 cannot answer the client's in-band data channel opens).
    subscriberPrimary: true,
    pingInterval: PING_INTERVAL_S,
    pingTimeout: PING_TIMEOUT_S,
    enabledPublishCodecs: ENABLED_PUBLISH_CODECS,
    // Single PeerConnection needs the client's header-extension ids on forwarded RTP, which
    // mediasoup 3.8.4 rewrites to its own: disabled.
    clientConfiguration: new ClientConfiguration({ forceRelay: ClientConfigSetting.DISABLED }),
  });
}

/** How a participant that left looks in a ParticipantUpdate. */
export function departedInfo(identity: string, sid: string): ParticipantInfo {
  return new ParticipantInfo({ identity, sid, state: ParticipantInfo_State.DISCONNECTED });
}

const DISCONNECT: Record<LeaveReason, DisconnectReason> = {
  CLIENT_INITIATED: DisconnectReason.CLIENT_INITIATED,
  DUPLICATE_IDENTITY: DisconnectReason.DUPLICATE_IDENTITY,
  PARTICIPANT_REMOVED: DisconnectReason.PARTICIPANT_REMOVED,
  ROOM_DELETED: DisconnectReason.ROOM_DELETED,
  ROOM_CLOSED: DisconnectReason.ROOM_CLOSED,
  SERVER_SHUTDOWN: DisconnectReason.SERVER_SHUTDOWN,
  CONNECTION_LOST: DisconnectReason.SIGNAL_CLOSE,
  JOIN_FAILURE: DisconnectReason.JOIN_FAILURE,
  MEDIA_FAILURE: DisconnectReason.MEDIA_FAILURE,
};

export function leaveRequest(reason: LeaveReason | 'STATE_MISMATCH'): LeaveRequest {
  return new LeaveRequest({
    reason: reason === 'STATE_MISMATCH' ? DisconnectReason.STATE_MISMATCH : DISCONNECT[reason],
    action: LeaveRequest_Action.DISCONNECT,
    canReconnect: false,
  });
}

/** roomgate's speaker list (0–1 levels, loudest first) as LiveKit's, sids for identities. */
export function speakers(list: ActiveSpeaker[], previous: ActiveSpeaker[]): SpeakerInfo[] {
  const now = list.map((s) => new SpeakerInfo({ sid: s.sid, level: s.level, active: true }));
  // LiveKit reports who stopped speaking with active=false, so clients clear their flags.
  const stopped = previous.filter((p) => !list.some((s) => s.sid === p.sid)).map((p) => new SpeakerInfo({ sid: p.sid, level: 0, active: false }));
  return [...now, ...stopped];
}

/**
 * A participant's connection quality, coarse: from mediasoup's scores (0–10) of the streams it
 * publishes, the best encoding of each stream and the worst stream. LiveKit rates both directions
 * with a MOS model; roomgate rates what it receives. A participant publishing nothing rates
 * EXCELLENT (nothing to judge: LiveKit's default too). `score` is on LiveKit's 1–5 scale.
 */
export function connectionQuality(participantSid: string, streams: number[][]): ConnectionQualityInfo {
  const judged = streams.filter((encodings) => encodings.length > 0).map((encodings) => Math.max(...encodings));
  const worst = judged.length > 0 ? Math.min(...judged) : 10;
  const quality = worst >= 8 ? ConnectionQuality.EXCELLENT : worst >= 5 ? ConnectionQuality.GOOD : ConnectionQuality.POOR;
  return new ConnectionQualityInfo({ participantSid, quality, score: 1 + (4 * worst) / 10 });
}

const QUALITY_LAYER: Record<VideoQuality, number> = {
  [VideoQuality.LOW]: 0,
  [VideoQuality.MEDIUM]: 1,
  [VideoQuality.HIGH]: 2,
  [VideoQuality.OFF]: 0,
};

/**
 * The simulcast layer (0 = lowest) for UpdateTrackSettings: by size when the client names one (the
 * smallest layer at least that large, as LiveKit picks), else by quality. Layers are the
 * publisher's TrackInfo.layers; `available` is how many spatial layers the producer has.
 */
export function preferredLayer(settings: { quality: VideoQuality; width: number; height: number }, track: TrackInfo, available: number): number {
  const top = Math.max(0, available - 1);
  if (settings.width > 0 || settings.height > 0) {
    const layers = [...track.layers].sort((a, b) => a.width * a.height - b.width * b.height);
    if (layers.length === 0) return top;
    const idx = layers.findIndex((l) => l.width >= settings.width && l.height >= settings.height);
    return Math.min(top, idx === -1 ? layers.length - 1 : idx);
  }
  return Math.min(top, QUALITY_LAYER[settings.quality] ?? top);
}

const REASON: Partial<Record<string, RequestResponse_Reason>> = {
  permission_denied: RequestResponse_Reason.NOT_ALLOWED,
  not_found: RequestResponse_Reason.NOT_FOUND,
  resource_exhausted: RequestResponse_Reason.LIMIT_EXCEEDED,
  invalid_argument: RequestResponse_Reason.INVALID_REQUEST,
  failed_precondition: RequestResponse_Reason.INVALID_REQUEST,
  malformed: RequestResponse_Reason.INVALID_REQUEST,
  unimplemented: RequestResponse_Reason.UNSUPPORTED_TYPE,
};

/** A refused request as LiveKit's RequestResponse: the reason from the error's code, its sentence as the message. */
export function requestError(err: ApiError, requestId = 0, request?: RequestResponse['request']): RequestResponse {
  return new RequestResponse({
    requestId,
    reason: REASON[err.code] ?? RequestResponse_Reason.UNCLASSIFIED_ERROR,
    message: err.message,
    ...(request ? { request } : {}),
  });
}
