// roomgate participant protocol, version 1: JSON text frames over the WebSocket at /rtc.
// Documented for client authors in docs/protocol.md; this file is the single source of truth.
//
//   client → server   {"id": 7, "method": "publishTrack", "data": {...}}
//   server → client   {"id": 7, "ok": true, "data": {...}}                    (response)
//                     {"id": 7, "ok": false, "error": {"code", "message"}}    (error response)
//                     {"event": "trackPublished", "data": {...}}             (push)
//
// The first frame the server sends is the `joined` event. Media parameters (RTP parameters and
// capabilities, DTLS/ICE/SCTP parameters) are mediasoup's objects, passed through untouched;
// participant, track and room descriptions are LiveKit's ParticipantInfo / TrackInfo / Room JSON.
import { z } from 'zod';
import { TRACK_SOURCES } from '../sfu/ParticipantTypes.ts';
import type { ActiveSpeaker, IceServer, Json, LeaveReason, ParticipantSignals } from '../sfu/ParticipantTypes.ts';

// The sfu's own vocabulary, whose JSON is this protocol's: one definition for both.
export { TRACK_SOURCES };
export type { ActiveSpeaker, IceServer, Json, LeaveReason, TrackSourceName } from '../sfu/ParticipantTypes.ts';

export const PROTOCOL_VERSION = 1;
/** Largest request frame accepted; larger ones get an error response, the socket stays open. */
export const MAX_REQUEST_BYTES = 64 * 1024;

const id = z.string().min(1).max(128);
/** mediasoup parameter objects: shape-checked here, fully validated by mediasoup itself. */
const params = z.record(z.string(), z.unknown());

export const requestSchemas = {
  /** Client's receive capabilities; server starts subscribing it to tracks after this. */
  ready: z.strictObject({ rtpCapabilities: params, sctpCapabilities: params.optional() }),
  createTransport: z.strictObject({ direction: z.enum(['send', 'recv']) }),
  connectTransport: z.strictObject({ transportId: id, dtlsParameters: params }),
  restartIce: z.strictObject({ transportId: id }),
  publishTrack: z.strictObject({
    transportId: id,
    kind: z.enum(['audio', 'video']),
    rtpParameters: params,
    source: z.enum(TRACK_SOURCES),
    name: z.string().max(256).optional(),
    muted: z.boolean().optional(),
    width: z.int().min(0).max(16384).optional(),
    height: z.int().min(0).max(16384).optional(),
  }),
  unpublishTrack: z.strictObject({ trackSid: id }),
  muteTrack: z.strictObject({ trackSid: id, muted: z.boolean() }),
  /** Selective subscription; every track is subscribed by default. */
  subscribe: z.strictObject({ trackSid: id, subscribe: z.boolean() }),
  resumeConsumer: z.strictObject({ consumerId: id }),
  pauseConsumer: z.strictObject({ consumerId: id }),
  setPreferredLayers: z.strictObject({
    consumerId: id,
    spatialLayer: z.int().min(0).max(3),
    temporalLayer: z.int().min(0).max(3).optional(),
  }),
  /** Opens the participant's data channel (SCTP) on its send transport. */
  publishData: z.strictObject({
    transportId: id,
    sctpStreamParameters: params,
    label: z.string().max(64).optional(),
    protocol: z.string().max(64).optional(),
  }),
  updateMetadata: z.strictObject({
    metadata: z.string().max(64_000).optional(),
    name: z.string().max(256).optional(),
    attributes: z.record(z.string().max(256), z.string().max(4096)).optional(),
  }),
  ping: z.strictObject({}),
  leave: z.strictObject({}),
} as const;

export type Method = keyof typeof requestSchemas;
export type RequestData<M extends Method> = z.infer<(typeof requestSchemas)[M]>;

export const requestEnvelope = z.strictObject({
  id: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  method: z.string().max(64),
  data: z.unknown().optional(),
});

export type ErrorCode =
  | 'unauthenticated'
  | 'malformed'
  | 'invalid_argument'
  | 'not_found'
  | 'permission_denied'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'unimplemented'
  | 'unavailable'
  | 'internal';

/** Pushed events: the sfu's participant signals, plus the join answer and the leave notice. */
export interface ServerEvents extends ParticipantSignals {
  joined: {
    protocolVersion: number;
    room: Json;
    participant: Json;
    participants: Json[];
    routerRtpCapabilities: Json;
    iceServers: IceServer[];
    /** Who is speaking now (later changes come as `activeSpeakers`). */
    activeSpeakers: ActiveSpeaker[];
    /** On a resumed session: every consumer and data channel the server holds for you, so the
     *  client can reconcile what changed while it was away. Empty on a fresh join. */
    consumers: ServerEvents['newConsumer'][];
    dataConsumers: ServerEvents['newDataConsumer'][];
    /** True when this connection resumed a session the server still held. */
    resumed: boolean;
  };
  left: { reason: LeaveReason; message?: string };
}

export type ServerEventName = keyof ServerEvents;

export type ServerMessage =
  | { id: number; ok: true; data: unknown }
  | { id: number | null; ok: false; error: { code: ErrorCode; message: string } }
  | { [K in ServerEventName]: { event: K; data: ServerEvents[K] } }[ServerEventName];
