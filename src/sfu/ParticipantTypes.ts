// The participant's vocabulary: what joins, what it may ask of its media, what it is told and why it
// leaves. Edges (roomgate signaling, LiveKit signaling, ingress, WHIP) translate their wire into
// these types; the roomgate protocol (src/signaling/protocol.ts) re-exports the ones whose wire shape
// is the same, so its JSON is exactly these objects.
import type { ParticipantInfo_Kind, ParticipantPermission, TrackInfo } from '@livekit/protocol';
import type { types } from 'mediasoup';

/** The sources a track can come from; a participant publishes at most one track per source. */
export const TRACK_SOURCES = ['camera', 'microphone', 'screen_share', 'screen_share_audio'] as const;
export type TrackSourceName = (typeof TRACK_SOURCES)[number];

/** Why a participant left; its connection is told this. */
export type LeaveReason =
  | 'CLIENT_INITIATED'
  | 'DUPLICATE_IDENTITY'
  | 'PARTICIPANT_REMOVED'
  | 'ROOM_DELETED'
  | 'ROOM_CLOSED'
  | 'SERVER_SHUTDOWN'
  | 'CONNECTION_LOST'
  | 'JOIN_FAILURE'
  /** The media worker carrying this participant's receive transport died; rejoining places it anew. */
  | 'MEDIA_FAILURE';

/**
 * Who joins a room and what it may do there: a join token's grants (src/auth/join.ts), or what a
 * server-side publisher (ingress) sets for itself.
 */
export interface ParticipantJoin {
  identity: string;
  name: string;
  metadata: string;
  attributes: Record<string, string>;
  /** What it may publish, subscribe to and send as data; changed live by setPermission. */
  permission: ParticipantPermission;
  /** LiveKit's participant kind: STANDARD, or INGRESS/EGRESS/AGENT for server-side participants. */
  kind?: ParticipantInfo_Kind | undefined;
}

export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export interface TransportSettings {
  listenIp: string;
  announcedIp?: string;
  iceServers: (identity: string) => IceServer[];
}

/** JSON objects as produced by @livekit/protocol's toJson(), and mediasoup's parameter objects. */
export type Json = Record<string, unknown>;

/** Who is speaking, loudest first. */
export interface ActiveSpeaker {
  identity: string;
  sid: string;
  /** 0 (silence) to 1 (full scale). */
  level: number;
}

// ---- requests a participant makes of its own media ---------------------------------------------
// mediasoup's parameter objects arrive as plain JSON, shape-checked by the edge and fully validated
// by mediasoup.

export interface ReadyRequest {
  rtpCapabilities: Json;
  sctpCapabilities?: Json | undefined;
}
export interface CreateTransportRequest {
  direction: 'send' | 'recv';
}
export interface ConnectTransportRequest {
  transportId: string;
  dtlsParameters: Json;
}
export interface TransportRef {
  transportId: string;
}
export interface PublishTrackRequest {
  transportId: string;
  kind: 'audio' | 'video';
  rtpParameters: Json;
  source: TrackSourceName;
  name?: string | undefined;
  muted?: boolean | undefined;
  width?: number | undefined;
  height?: number | undefined;
}
export interface TrackRef {
  trackSid: string;
}
export interface ConsumerRef {
  consumerId: string;
}
export interface PreferredLayersRequest {
  consumerId: string;
  spatialLayer: number;
  temporalLayer?: number | undefined;
}
export interface PublishDataRequest {
  transportId: string;
  sctpStreamParameters: Json;
  label?: string | undefined;
  protocol?: string | undefined;
}
export interface UpdateMetadataRequest {
  metadata?: string | undefined;
  name?: string | undefined;
  attributes?: Record<string, string> | undefined;
}

// ---- what a participant is told -----------------------------------------------------------------

/** The messages the room pushes to one participant's connection, by name. */
export interface ParticipantSignals {
  participantJoined: { participant: Json };
  participantUpdated: { participant: Json };
  participantLeft: { identity: string; sid: string };
  trackPublished: { participantIdentity: string; track: Json };
  trackUnpublished: { participantIdentity: string; trackSid: string };
  trackMuted: { participantIdentity: string; trackSid: string; muted: boolean };
  newConsumer: {
    consumerId: string;
    producerId: string;
    trackSid: string;
    participantIdentity: string;
    kind: 'audio' | 'video';
    rtpParameters: Json;
    producerPaused: boolean;
  };
  consumerClosed: { consumerId: string; trackSid: string };
  /** A subscribed video stopped reaching the subscriber unasked, or came back; changes only (see ParticipantSubscribing). */
  streamState: { trackSid: string; participantIdentity: string; state: 'active' | 'paused' };
  /** The server's data channel to this participant (messages from others and SendData). */
  newDataConsumer: { id: string; dataProducerId: string; sctpStreamParameters: Json; label: string; protocol: string; reliable: boolean };
  activeSpeakers: { speakers: ActiveSpeaker[] };
  roomMetadata: { metadata: string };
  permissionsChanged: { permission: Json };
}

export type ParticipantSignalName = keyof ParticipantSignals;

/** Where a participant's server messages go: its signaling connection (absent while reconnecting). */
export interface SignalSink {
  send<K extends ParticipantSignalName>(event: K, data: ParticipantSignals[K]): void;
  close(reason: LeaveReason): void;
  /** A newer connection resumed this participant's session: end this one without leaving. */
  superseded(): void;
}

// ---- data ---------------------------------------------------------------------------------------

/** A data message the room delivers to one participant. */
export interface RoomData {
  /** The user payload; absent for a LiveKit-only packet (chat, streams, RPC) that only LiveKit clients read. */
  payload?: Uint8Array;
  topic?: string;
  /** Sender identity and sid; absent for RoomService SendData and hidden senders. */
  from?: string;
  fromSid?: string;
  reliable: boolean;
  /** The sender's LiveKit DataPacket when it came from a LiveKit client, for LiveKit recipients. */
  packet?: Uint8Array;
}

/** What a participant's own data channel message asks the room to deliver. */
export interface InboundData extends Omit<RoomData, 'from' | 'fromSid'> {
  destinations: string[];
}

/**
 * A participant whose client frames data in its own protocol (LiveKit clients): the room reads its
 * messages through `read` and hands it messages through `deliver` instead of opening the roomgate
 * data channel towards it.
 */
/**
 * A client that keeps its receive m-sections across subscriptions (LiveKit clients: the server
 * writes their subscriber offers): a new consumer may take a freed section's mid instead of
 * growing the SDP by one section per subscription.
 */
export interface MidReuse {
  /** A freed mid of this kind the client has seen go inactive, now taken; undefined for a new one. */
  takeMid(kind: 'audio' | 'video'): string | undefined;
}

export interface DataPath {
  read(message: Buffer): InboundData | undefined;
  deliver(message: RoomData): void;
}

// ---- tracks and events --------------------------------------------------------------------------

export interface PublishedTrack {
  readonly info: TrackInfo;
  readonly producer: types.Producer;
  readonly ownerIdentity: string;
}

export type ParticipantEvents = {
  '@trackpublished': [track: PublishedTrack];
  '@trackunpublished': [track: PublishedTrack];
  '@trackmuted': [track: PublishedTrack];
  '@updated': [];
  '@ready': [];
  '@dataproducer': [dataProducer: types.DataProducer];
  '@close': [reason: LeaveReason];
};
