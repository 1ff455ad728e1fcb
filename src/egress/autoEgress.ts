// Auto egress for the room manager (src/sfu/RoomTypes.ts AutoEgress): a room created with
// `egress.room` (CreateRoom, or a join token's roomConfig) starts that room composite as it is
// created, as LiveKit does. The request is validated like StartRoomCompositeEgress, against the
// room about to exist, so a bad one refuses the creation with the field named. The composite waits
// (STARTING) until someone publishes and ends when the room is gone.
import type { RoomEgress, Room as RoomInfo } from '@livekit/protocol';
import type { AutoEgress } from '../sfu/RoomTypes.ts';
import { ApiError } from '../errors.ts';
import type { EgressService } from './EgressService.ts';
import type { S3Defaults } from './request.ts';
import { validateRoomComposite } from './composite/request.ts';

/** A validation error of a nested request, re-labelled with the path it has inside CreateRoom. */
function within(path: string, err: unknown): unknown {
  if (!(err instanceof ApiError)) return err;
  const argument = err.meta.argument;
  return new ApiError(err.code, `${path}: ${err.message}`, argument ? { ...err.meta, argument: `${path}.${argument}` } : err.meta);
}

export function autoEgress(deps: { launcher: Pick<EgressService, 'start'>; s3: S3Defaults }): AutoEgress {
  return {
    async prepare(room: RoomInfo, egress: RoomEgress) {
      // Refused by name: a recording asked for and silently not made is the worst outcome.
      if (egress.participant) {
        throw new ApiError('unimplemented', 'egress.participant (auto participant egress) is not supported; use StartParticipantEgress when a participant publishes', { argument: 'egress.participant' });
      }
      if (egress.tracks) {
        throw new ApiError('unimplemented', 'egress.tracks (auto track egress) is not supported; use StartTrackEgress when a track is published', { argument: 'egress.tracks' });
      }
      if (!egress.room) return undefined;
      const req = egress.room.clone();
      // The recording is of this room, whatever the request names.
      req.roomName = room.name;
      const validated = await validateRoomComposite(req, { roomSid: async () => room.sid, track: () => undefined }, deps.s3).catch((err: unknown) => {
        throw within('egress.room', err);
      });
      return async () => {
        await deps.launcher.start(validated);
      };
    },
  };
}
