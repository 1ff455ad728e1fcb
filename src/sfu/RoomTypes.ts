import type { Room as RoomInfo, ParticipantInfo, RoomEgress, TrackInfo } from '@livekit/protocol';
import type { types } from 'mediasoup';
import type { Participant } from './Participant.ts';
import type { ActiveSpeaker, LeaveReason, ParticipantJoin, PublishedTrack } from './ParticipantTypes.ts';

export type { RoomInfo, ParticipantInfo, TrackInfo, ActiveSpeaker };

/** Why a room closed; carried into logs and participant leave reasons. */
export type RoomCloseReason = 'deleted' | 'empty_timeout' | 'departure_timeout' | 'shutdown' | 'worker_died';

export const LEAVE_REASON_FOR_CLOSE: Record<RoomCloseReason, LeaveReason> = {
  deleted: 'ROOM_DELETED',
  empty_timeout: 'ROOM_CLOSED',
  departure_timeout: 'ROOM_CLOSED',
  shutdown: 'SERVER_SHUTDOWN',
  worker_died: 'ROOM_CLOSED',
};

export type RoomEvents = {
  /** To the owner (RoomManager): the room closed itself or was closed. */
  '@close': [reason: RoomCloseReason];
  '@participantjoined': [participant: Participant];
  '@participantleft': [participant: Participant, reason: LeaveReason];
  '@trackpublished': [participant: Participant, track: TrackInfo];
  '@trackunpublished': [participant: Participant, track: TrackInfo];
};

/**
 * The settings of a room a join creates (LiveKit's token roomConfig): read from the token by the
 * caller, used only when the room does not exist yet. 0 and absent take the configured defaults.
 */
export interface NewRoomSettings {
  emptyTimeout?: number | undefined;
  departureTimeout?: number | undefined;
  maxParticipants?: number | undefined;
  metadata?: string | undefined;
  egress?: RoomEgress | undefined;
}

/** A participant joining a room by name: the room is created if absent (LiveKit's auto-create). */
export interface JoinRequest extends ParticipantJoin {
  room: string;
  roomSettings?: NewRoomSettings | undefined;
}

/** A dropped connection comes back to the session the room still holds. */
export interface ResumeRequest {
  room: string;
  identity: string;
}

/**
 * The framing of the room's own data channel towards participants without a DataPath (the
 * roomgate protocol's envelope, src/signaling/dataEnvelope.ts): the room relays bytes, topic and
 * destinations, and the edge that speaks the wire says how they are framed.
 */
export interface RelayCodec {
  /** The channel's SCTP label and sub-protocol, as the client expects them. */
  readonly label: string;
  readonly protocol: string;
  /** A participant's own message; undefined drops it (not a frame of this protocol). */
  decode(message: Uint8Array): { payload: Uint8Array; topic?: string | undefined; destinations: string[] } | undefined;
  /** One message for the channel; `from` is absent for server messages and hidden senders. */
  encode(message: { payload: Uint8Array; topic?: string | undefined; from?: string | undefined }): Uint8Array;
}

/**
 * A viewer outside the room (a WHEP player): a Router of its own, with the payload types it asked
 * for, on any worker, fed from the room's; one WebRtcTransport on it whose DTLS and ICE the edge
 * completes. Closing the transport closes the viewer's Router.
 */
export interface Viewer {
  readonly transport: types.WebRtcTransport;
  /** Pipes `track` from the room to the viewer's Router and consumes it there, unpaused. */
  consume(track: Pick<PublishedTrack, 'producer'>, rtpCapabilities: types.RtpCapabilities): Promise<types.Consumer>;
}

/**
 * Where a room's receivers go (implemented by WorkerPool): the room's own worker until it carries
 * its consumer budget, then another worker, where the room opens an overflow Router fed from its
 * own by pipeToRouter.
 */
export interface ReceiverPlacement {
  /** The pid of the worker a new receiver should use; undefined when `origin`'s worker is gone. */
  receiverWorker(origin: types.Router): number | undefined;
  /** A Router with the rooms' codecs on worker `pid`; rejects when that worker is not running. */
  createRouterOn(pid: number, appData: Record<string, unknown>): Promise<types.Router>;
  workerPidOf(router: types.Router): number | undefined;
}

export interface RoomMedia {
  /** The room's own Router: every producer, the data relay and the audio level observer live here. */
  router: types.Router;
  /** Relays data messages between participants (and from the RoomService SendData). */
  dataRelay: types.DirectTransport;
  audioLevels: types.AudioLevelObserver;
}

/**
 * Auto egress (LiveKit's CreateRoomRequest.egress, or a join token's roomConfig.egress), declared
 * here and implemented by the egress package: the room layer decides when, egress decides how.
 */
export interface AutoEgress {
  /**
   * Checks the config of a room about to be created and returns what starts its egress, or
   * undefined when it asks for none. Throws the API error that refuses the config: it runs before
   * the room is stored, so a refused config creates nothing.
   */
  prepare(room: RoomInfo, egress: RoomEgress): Promise<(() => Promise<void>) | undefined>;
}
