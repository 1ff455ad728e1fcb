// livekit.RoomService: thin handlers. Each one checks its grant, validates, and delegates to the
// room backend (the SFU's RoomManager) through the narrow interface below; nothing here touches media.
import {
  CreateRoomRequest,
  DeleteRoomRequest,
  DeleteRoomResponse,
  ListParticipantsRequest,
  ListParticipantsResponse,
  ListRoomsRequest,
  ListRoomsResponse,
  MuteRoomTrackRequest,
  MuteRoomTrackResponse,
  RemoveParticipantResponse,
  RoomParticipantIdentity,
  SendDataRequest,
  SendDataResponse,
  UpdateParticipantRequest,
  UpdateRoomMetadataRequest,
  UpdateSubscriptionsRequest,
  UpdateSubscriptionsResponse,
  type ParticipantInfo,
  type ParticipantPermission,
  type Room,
  type RoomEgress,
  type TrackInfo,
} from '@livekit/protocol';
import {
  ensureAdminPermission,
  ensureCreatePermission,
  ensureListPermission,
} from '../../auth/permissions.ts';
import { invalidArgument } from '../../errors.ts';
import { method, type TwirpService } from './router.ts';

/** What RoomService needs from the room layer. */
export interface RoomBackend {
  createRoom(opts: {
    name: string;
    emptyTimeout?: number;
    departureTimeout?: number;
    maxParticipants?: number;
    metadata?: string;
    /** Auto egress: checked (a bad one refuses the call, creating nothing), started only by a new room. */
    egress?: RoomEgress | undefined;
  }): Promise<Room>;
  listRooms(names: string[]): Promise<Room[]>;
  deleteRoom(name: string): Promise<void>;
  updateRoomMetadata(name: string, metadata: string): Promise<Room>;
  listParticipants(room: string): Promise<ParticipantInfo[]>;
  getParticipant(room: string, identity: string): Promise<ParticipantInfo>;
  removeParticipant(room: string, identity: string): Promise<void>;
  mutePublishedTrack(room: string, identity: string, trackSid: string, muted: boolean): Promise<TrackInfo>;
  updateParticipant(
    room: string,
    identity: string,
    req: { metadata: string; name: string; attributes: Record<string, string>; permission?: ParticipantPermission | undefined },
  ): Promise<ParticipantInfo>;
  updateSubscriptions(room: string, identity: string, trackSids: string[], subscribe: boolean): Promise<void>;
  sendData(
    room: string,
    req: { data: Uint8Array; topic?: string | undefined; destinationIdentities: string[]; destinationSids: string[] },
  ): Promise<{ recipients: number }>;
}

/** LiveKit's default limit.max_metadata_size. */
export const MAX_METADATA_BYTES = 64_000;
export const MAX_NAME_BYTES = 256;

export function checkName(value: string, what: 'room' | 'identity' | 'names'): string {
  if (value.trim() === '') throw invalidArgument(`${what} must not be empty`, what);
  if (Buffer.byteLength(value) > MAX_NAME_BYTES) throw invalidArgument(`${what} is longer than ${MAX_NAME_BYTES} bytes`, what);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw invalidArgument(`${what} must not contain control characters`, what);
  return value;
}

export function checkMetadata(value: string): string {
  if (Buffer.byteLength(value) > MAX_METADATA_BYTES) {
    throw invalidArgument(`metadata is larger than ${MAX_METADATA_BYTES} bytes`, 'metadata');
  }
  return value;
}

export function roomService(rooms: RoomBackend): TwirpService {
  return {
    name: 'livekit.RoomService',
    methods: {
      CreateRoom: method(CreateRoomRequest, async (req, { claims, log }) => {
        ensureCreatePermission(claims);
        log.debug({ room: req.name }, 'CreateRoom');
        return rooms.createRoom({
          name: checkName(req.name, 'room'),
          emptyTimeout: req.emptyTimeout,
          departureTimeout: req.departureTimeout,
          maxParticipants: req.maxParticipants,
          metadata: checkMetadata(req.metadata),
          egress: req.egress,
        });
      }),
      ListRooms: method(ListRoomsRequest, async (req, { claims }) => {
        ensureListPermission(claims);
        if (req.names.length > 1000) throw invalidArgument('at most 1000 names may be listed at once', 'names');
        return new ListRoomsResponse({ rooms: await rooms.listRooms(req.names.map((n) => checkName(n, 'names'))) });
      }),
      DeleteRoom: method(DeleteRoomRequest, async (req, { claims, log }) => {
        ensureCreatePermission(claims);
        log.debug({ room: req.room }, 'DeleteRoom');
        await rooms.deleteRoom(checkName(req.room, 'room'));
        return new DeleteRoomResponse();
      }),
      UpdateRoomMetadata: method(UpdateRoomMetadataRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        return rooms.updateRoomMetadata(checkName(req.room, 'room'), checkMetadata(req.metadata));
      }),
      ListParticipants: method(ListParticipantsRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        return new ListParticipantsResponse({ participants: await rooms.listParticipants(checkName(req.room, 'room')) });
      }),
      GetParticipant: method(RoomParticipantIdentity, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        return rooms.getParticipant(checkName(req.room, 'room'), checkName(req.identity, 'identity'));
      }),
      RemoveParticipant: method(RoomParticipantIdentity, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        await rooms.removeParticipant(checkName(req.room, 'room'), checkName(req.identity, 'identity'));
        return new RemoveParticipantResponse();
      }),
      MutePublishedTrack: method(MuteRoomTrackRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        if (!req.trackSid) throw invalidArgument('track_sid must not be empty', 'track_sid');
        const track = await rooms.mutePublishedTrack(
          checkName(req.room, 'room'),
          checkName(req.identity, 'identity'),
          req.trackSid,
          req.muted,
        );
        return new MuteRoomTrackResponse({ track });
      }),
      UpdateParticipant: method(UpdateParticipantRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        checkMetadata(req.metadata);
        return rooms.updateParticipant(checkName(req.room, 'room'), checkName(req.identity, 'identity'), req);
      }),
      UpdateSubscriptions: method(UpdateSubscriptionsRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        // participantTracks is LiveKit's per-publisher form of the same list.
        const sids = [...req.trackSids, ...req.participantTracks.flatMap((pt) => pt.trackSids)];
        if (sids.length === 0) throw invalidArgument('track_sids must name at least one track', 'track_sids');
        await rooms.updateSubscriptions(checkName(req.room, 'room'), checkName(req.identity, 'identity'), sids, req.subscribe);
        return new UpdateSubscriptionsResponse();
      }),
      SendData: method(SendDataRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        if (req.data.length === 0) throw invalidArgument('data must not be empty', 'data');
        await rooms.sendData(checkName(req.room, 'room'), {
          data: req.data,
          topic: req.topic,
          destinationIdentities: req.destinationIdentities,
          destinationSids: req.destinationSids,
        });
        return new SendDataResponse();
      }),
    },
  };
}
