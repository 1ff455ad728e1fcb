import type { Room as RoomInfo, ParticipantInfo, RoomEgress, TrackInfo } from '@livekit/protocol';
import type { types } from 'mediasoup';
import type { LeaveReason } from '../signaling/protocol.ts';
import type { Participant } from './Participant.ts';

export type { RoomInfo, ParticipantInfo, TrackInfo };

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

export interface RoomMedia {
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
