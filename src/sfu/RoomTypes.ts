import type { Room as RoomInfo, ParticipantInfo } from '@livekit/protocol';
import type { types } from 'mediasoup';

export type { RoomInfo, ParticipantInfo };

/** Why a room closed; carried into logs and (later) participant disconnect reasons. */
export type RoomCloseReason = 'deleted' | 'empty_timeout' | 'departure_timeout' | 'shutdown' | 'worker_died';

export type RoomEvents = {
  /** To the owner (RoomManager): the room closed itself or was closed. */
  '@close': [reason: RoomCloseReason];
};

export interface Room {
  readonly name: string;
  readonly sid: string;
  readonly closed: boolean;
  readonly router: types.Router;
  /** A copy of the room's info with live counters filled in. */
  info(): RoomInfo;
  participants(): ParticipantInfo[];
  setMetadata(metadata: string): void;
  close(reason: RoomCloseReason): void;
  on<K extends keyof RoomEvents>(event: K, listener: (...args: RoomEvents[K]) => void): this;
}
