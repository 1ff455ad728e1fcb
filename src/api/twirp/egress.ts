// livekit.Egress as EgressClient sends it: StartParticipantEgress, StartTrackCompositeEgress,
// StartTrackEgress, StartRoomCompositeEgress, StopEgress, ListEgress, UpdateStream, UpdateLayout.
// Each method: parse (the router decodes; Start* validate into a job spec) → authorize (roomRecord)
// → call the EgressService → answer its EgressInfo. Start answers at once; workers do the rest.
// Web egress needs a browser and is refused.
import {
  ListEgressRequest,
  ListEgressResponse,
  ParticipantEgressRequest,
  RoomCompositeEgressRequest,
  StopEgressRequest,
  TrackCompositeEgressRequest,
  TrackEgressRequest,
  UpdateLayoutRequest,
  UpdateStreamRequest,
  WebEgressRequest,
} from '@livekit/protocol';
import { ensureRecordPermission } from '../../auth/permissions.ts';
import type { EgressService } from '../../egress/EgressService.ts';
import { validateParticipant, validateTrack, validateTrackComposite, type EgressRoomLookup, type S3Defaults } from '../../egress/request.ts';
import { validateRoomComposite } from '../../egress/composite/request.ts';
import { ApiError } from '../../errors.ts';
import { method, type TwirpService } from './router.ts';

export interface EgressServiceDeps {
  service: EgressService;
  rooms: EgressRoomLookup;
  s3: S3Defaults;
}

export function egressService(deps: EgressServiceDeps): TwirpService {
  const { service, rooms, s3 } = deps;
  return {
    name: 'livekit.Egress',
    methods: {
      StartParticipantEgress: method(ParticipantEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return service.start(await validateParticipant(req, rooms, s3), log);
      }),
      StartTrackCompositeEgress: method(TrackCompositeEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return service.start(await validateTrackComposite(req, rooms, s3), log);
      }),
      StartTrackEgress: method(TrackEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return service.start(await validateTrack(req, rooms, s3), log);
      }),
      StartRoomCompositeEgress: method(RoomCompositeEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return service.start(await validateRoomComposite(req, rooms, s3), log);
      }),
      StartWebEgress: method(WebEgressRequest, async (_req, { claims }) => {
        ensureRecordPermission(claims);
        throw new ApiError('unimplemented', 'web egress needs a browser; use room composite egress with a layout template');
      }),
      UpdateLayout: method(UpdateLayoutRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return service.updateLayout(req.egressId, req.layout, log);
      }),
      ListEgress: method(ListEgressRequest, async (req, { claims }) => {
        ensureRecordPermission(claims);
        return new ListEgressResponse({ items: await service.list({ roomName: req.roomName, egressId: req.egressId, active: req.active }) });
      }),
      StopEgress: method(StopEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return service.stop(req.egressId, log);
      }),
      UpdateStream: method(UpdateStreamRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return service.updateStream(req.egressId, req.addOutputUrls, req.removeOutputUrls, log);
      }),
    },
  };
}
