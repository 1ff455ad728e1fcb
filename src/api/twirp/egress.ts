// livekit.Egress as EgressClient sends it: StartParticipantEgress, StartTrackCompositeEgress,
// StartTrackEgress, StartRoomCompositeEgress, StopEgress, ListEgress, UpdateStream, UpdateLayout.
// Start validates and hands over to the EgressLauncher (record EGRESS_STARTING, job queued) and
// answers at once; workers do the rest. Web egress needs a browser and is refused.
import {
  EgressInfo,
  EgressStatus,
  ListEgressRequest,
  ListEgressResponse,
  ParticipantEgressRequest,
  RoomCompositeEgressRequest,
  StopEgressRequest,
  StreamInfo,
  StreamInfo_Status,
  TrackCompositeEgressRequest,
  TrackEgressRequest,
  UpdateLayoutRequest,
  UpdateStreamRequest,
  WebEgressRequest,
} from '@livekit/protocol';
import { ensureRecordPermission } from '../../auth/permissions.ts';
import type { EgressLauncher } from '../../egress/EgressLauncher.ts';
import type { EgressQueue } from '../../egress/EgressQueue.ts';
import { isFinal, type EgressStore } from '../../egress/EgressStore.ts';
import { checkUrls, validateParticipant, validateTrack, validateTrackComposite, type EgressRoomLookup, type S3Defaults } from '../../egress/request.ts';
import { redactStreamUrl, sameStreamUrl } from '../../egress/urls.ts';
import { canUpdateLayout, checkLayout, setInfoLayout, validateRoomComposite } from '../../egress/composite/request.ts';
import { ApiError, invalidArgument, notFound } from '../../errors.ts';
import type { WebhookNotifier } from '../../webhooks/WebhookNotifier.ts';
import { method, type TwirpService } from './router.ts';
import { nowNs } from '../../time.ts';

export interface EgressServiceDeps {
  store: EgressStore;
  queue: EgressQueue;
  launcher: EgressLauncher;
  rooms: EgressRoomLookup;
  s3: S3Defaults;
  webhooks: Pick<WebhookNotifier, 'notify'>;
}

export function egressService(deps: EgressServiceDeps): TwirpService {
  const { store, queue, launcher, webhooks } = deps;

  const find = async (egressId: string): Promise<EgressInfo> => {
    if (!egressId) throw invalidArgument('egress_id is required', 'egress_id');
    const info = await store.get(egressId);
    if (!info) throw notFound(`egress '${egressId}' does not exist`);
    return info;
  };

  const composite = () =>
    new ApiError('unimplemented', 'web egress needs a browser; use room composite egress with a layout template');

  return {
    name: 'livekit.Egress',
    methods: {
      StartParticipantEgress: method(ParticipantEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return launcher.start(await validateParticipant(req, deps.rooms, deps.s3), log);
      }),
      StartTrackCompositeEgress: method(TrackCompositeEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return launcher.start(await validateTrackComposite(req, deps.rooms, deps.s3), log);
      }),
      StartTrackEgress: method(TrackEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return launcher.start(await validateTrack(req, deps.rooms, deps.s3), log);
      }),
      StartRoomCompositeEgress: method(RoomCompositeEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        return launcher.start(await validateRoomComposite(req, deps.rooms, deps.s3), log);
      }),
      StartWebEgress: method(WebEgressRequest, async (_req, { claims }) => {
        ensureRecordPermission(claims);
        throw composite();
      }),
      UpdateLayout: method(UpdateLayoutRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        const info = await find(req.egressId);
        canUpdateLayout(info);
        const layout = checkLayout(req.layout);
        const job = await queue.job(info.egressId);
        if (job?.data.source.kind === 'room_composite') await job.updateData({ ...job.data, source: { ...job.data.source, layout } });
        const updated = await store.update(info.egressId, (i) => setInfoLayout(i, layout));
        await queue.control({ type: 'update_layout', egressId: info.egressId, layout });
        log.info({ egress: info.egressId, layout }, 'egress layout updated');
        return updated ?? info;
      }),
      ListEgress: method(ListEgressRequest, async (req, { claims }) => {
        ensureRecordPermission(claims);
        const items = await store.list({ roomName: req.roomName, egressId: req.egressId, active: req.active });
        return new ListEgressResponse({ items });
      }),
      StopEgress: method(StopEgressRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        const info = await find(req.egressId);
        if (isFinal(info.status)) {
          throw new ApiError('failed_precondition', `egress '${info.egressId}' has already ended (${EgressStatus[info.status]})`);
        }
        await store.markStopRequested(info.egressId);
        if (await queue.removeIfWaiting(info.egressId)) {
          // Never started: nothing was recorded (LiveKit's EGRESS_ABORTED).
          const ended = await store.update(info.egressId, (i) => {
            i.status = EgressStatus.EGRESS_ABORTED;
            i.endedAt = nowNs();
            i.error = 'stopped before it started';
            i.errorCode = 412;
            i.details = 'End reason: StopEgress while queued';
            for (const s of i.streamResults) s.status = StreamInfo_Status.FINISHED;
          });
          log.info({ egress: info.egressId }, 'queued egress aborted');
          if (ended) webhooks.notify('egress_ended', { egressInfo: ended }, ended.roomName);
          return ended ?? info;
        }
        await queue.control({ type: 'stop', egressId: info.egressId });
        log.info({ egress: info.egressId }, 'egress stop requested');
        const ending = await store.update(info.egressId, (i) => {
          i.status = EgressStatus.EGRESS_ENDING;
        });
        return ending ?? info;
      }),
      UpdateStream: method(UpdateStreamRequest, async (req, { claims, log }) => {
        ensureRecordPermission(claims);
        const info = await find(req.egressId);
        if (info.status !== EgressStatus.EGRESS_STARTING && info.status !== EgressStatus.EGRESS_ACTIVE) {
          throw new ApiError('failed_precondition', `egress '${info.egressId}' is ${EgressStatus[info.status]}; streams change only while it is starting or active`);
        }
        const found = await queue.spec(info.egressId);
        if (!found?.spec.stream) throw new ApiError('failed_precondition', `egress '${info.egressId}' has no stream output`);
        const { job, spec } = found;
        const current = found.spec.stream.urls;
        const add = checkUrls(req.addOutputUrls);
        for (const u of add) if (current.includes(u)) throw invalidArgument(`add_output_urls: '${redactStreamUrl(u)}' is already an output`, 'add_output_urls');
        const remove = req.removeOutputUrls.map((u) => {
          const real = current.find((c) => sameStreamUrl(c, u));
          if (!real) throw invalidArgument(`remove_output_urls: '${redactStreamUrl(u)}' is not one of this egress's stream urls`, 'remove_output_urls');
          return real;
        });
        const urls = [...current.filter((u) => !remove.includes(u)), ...add];
        if (urls.length === 0 && !spec.file) {
          throw invalidArgument('removing every stream url would leave the egress without outputs; use StopEgress', 'remove_output_urls');
        }
        await queue.updateSpec(job, { ...spec, stream: { urls } });
        const updated = await store.update(info.egressId, (i) => {
          for (const r of remove) {
            const shown = redactStreamUrl(r);
            for (const s of i.streamResults) {
              if (s.url === shown && s.status !== StreamInfo_Status.FINISHED) {
                s.status = StreamInfo_Status.FINISHED;
                s.endedAt = nowNs();
              }
            }
          }
          for (const a of add) i.streamResults.push(new StreamInfo({ url: redactStreamUrl(a), status: StreamInfo_Status.ACTIVE }));
        });
        await queue.control({ type: 'update_stream', egressId: info.egressId, add, remove });
        log.info({ egress: info.egressId, added: add.length, removed: remove.length }, 'egress streams updated');
        return updated ?? info;
      }),
    },
  };
}
