// The gateway's egress operations, whatever asked for them: the Twirp Egress API
// (src/api/twirp/egress.ts: parse, authorize, call this) and auto egress (src/egress/autoEgress.ts).
// Starting writes the record (EGRESS_STARTING), queues the job and sends egress_started; stopping
// and updating reach the job in the queue or the worker that runs it. Every status it writes goes
// through EgressRecords (status.ts's machine), as the workers' writes do.
import { StreamInfo, StreamInfo_Status, type EgressInfo, EgressStatus } from '@livekit/protocol';
import type { Logger } from '../logger.ts';
import type { WebhookNotifier } from '../webhooks/WebhookNotifier.ts';
import { ApiError, invalidArgument, notFound } from '../errors.ts';
import { nowNs } from '../time.ts';
import type { EgressQueue } from './EgressQueue.ts';
import { EgressRecords } from './EgressRecords.ts';
import type { EgressStore } from './EgressStore.ts';
import { checkUrls, type Validated } from './request.ts';
import { isFinal } from './status.ts';
import { redactStreamUrl, sameStreamUrl } from './urls.ts';
import { canUpdateLayout, checkLayout, setInfoLayout } from './composite/request.ts';

/** What the service asks of the job queue (src/egress/EgressQueue.ts). */
export type EgressJobQueue = Pick<EgressQueue, 'add' | 'job' | 'spec' | 'updateSpec' | 'removeIfWaiting' | 'control'>;

export class EgressService {
  readonly #records: EgressRecords;
  readonly #queue: EgressJobQueue;
  readonly #log: Logger;

  constructor(opts: { store: EgressStore; queue: EgressJobQueue; webhooks: Pick<WebhookNotifier, 'notify'>; log: Logger }) {
    this.#records = new EgressRecords({ store: opts.store, webhooks: opts.webhooks });
    this.#queue = opts.queue;
    this.#log = opts.log;
  }

  /** A validated request becomes a record and a queued job. `log` carries the caller's context. */
  async start({ spec, info }: Validated, log: Logger = this.#log): Promise<EgressInfo> {
    await this.#records.create(info);
    await this.#queue.add(spec);
    log.info({ egress: spec.egressId, room: spec.roomName, kind: spec.source.kind, file: spec.file?.filepath, streams: spec.stream?.urls.length ?? 0 }, 'egress queued');
    this.#records.notify('egress_started', info);
    return info;
  }

  async find(egressId: string): Promise<EgressInfo> {
    if (!egressId) throw invalidArgument('egress_id is required', 'egress_id');
    const info = await this.#records.get(egressId);
    if (!info) throw notFound(`egress '${egressId}' does not exist`);
    return info;
  }

  list(filter: { roomName?: string; egressId?: string; active?: boolean }): Promise<EgressInfo[]> {
    return this.#records.list(filter);
  }

  /** StopEgress: a queued job is removed (ABORTED); a running one's worker is told (ENDING). */
  async stop(egressId: string, log: Logger = this.#log): Promise<EgressInfo> {
    const info = await this.find(egressId);
    if (isFinal(info.status)) {
      throw new ApiError('failed_precondition', `egress '${info.egressId}' has already ended (${EgressStatus[info.status]})`);
    }
    await this.#records.store.markStopRequested(info.egressId);
    if (await this.#queue.removeIfWaiting(info.egressId)) {
      // Never started: nothing was recorded (LiveKit's EGRESS_ABORTED).
      const ended = await this.#records.transition(info.egressId, { type: 'end', status: EgressStatus.EGRESS_ABORTED }, (i) => {
        i.endedAt = nowNs();
        i.error = 'stopped before it started';
        i.errorCode = 412;
        i.details = 'End reason: StopEgress while queued';
        for (const s of i.streamResults) s.status = StreamInfo_Status.FINISHED;
      });
      log.info({ egress: info.egressId }, 'queued egress aborted');
      return ended ?? (await this.#records.get(info.egressId)) ?? info;
    }
    await this.#queue.control({ type: 'stop', egressId: info.egressId });
    log.info({ egress: info.egressId }, 'egress stop requested');
    const ending = await this.#records.transition(info.egressId, { type: 'stop' });
    return ending ?? (await this.#records.get(info.egressId)) ?? info;
  }

  /** UpdateLayout (room composite): the job's data, the record and the running compositor. */
  async updateLayout(egressId: string, requested: string, log: Logger = this.#log): Promise<EgressInfo> {
    const info = await this.find(egressId);
    canUpdateLayout(info);
    const layout = checkLayout(requested);
    const job = await this.#queue.job(info.egressId);
    if (job?.data.source.kind === 'room_composite') await job.updateData({ ...job.data, source: { ...job.data.source, layout } });
    const updated = await this.#records.amend(info.egressId, (i) => setInfoLayout(i, layout));
    await this.#queue.control({ type: 'update_layout', egressId: info.egressId, layout });
    log.info({ egress: info.egressId, layout }, 'egress layout updated');
    return updated ?? info;
  }

  /** UpdateStream: stream outputs added and removed, in the job's data, the record and the running job. */
  async updateStream(egressId: string, addUrls: string[], removeUrls: string[], log: Logger = this.#log): Promise<EgressInfo> {
    const info = await this.find(egressId);
    if (info.status !== EgressStatus.EGRESS_STARTING && info.status !== EgressStatus.EGRESS_ACTIVE) {
      throw new ApiError('failed_precondition', `egress '${info.egressId}' is ${EgressStatus[info.status]}; streams change only while it is starting or active`);
    }
    const found = await this.#queue.spec(info.egressId);
    if (!found?.spec.stream) throw new ApiError('failed_precondition', `egress '${info.egressId}' has no stream output`);
    const { job, spec } = found;
    const current = found.spec.stream.urls;
    const add = checkUrls(addUrls);
    for (const u of add) if (current.includes(u)) throw invalidArgument(`add_output_urls: '${redactStreamUrl(u)}' is already an output`, 'add_output_urls');
    const remove = removeUrls.map((u) => {
      const real = current.find((c) => sameStreamUrl(c, u));
      if (!real) throw invalidArgument(`remove_output_urls: '${redactStreamUrl(u)}' is not one of this egress's stream urls`, 'remove_output_urls');
      return real;
    });
    const urls = [...current.filter((u) => !remove.includes(u)), ...add];
    if (urls.length === 0 && !spec.file) {
      throw invalidArgument('removing every stream url would leave the egress without outputs; use StopEgress', 'remove_output_urls');
    }
    await this.#queue.updateSpec(job, { ...spec, stream: { urls } });
    const updated = await this.#records.amend(info.egressId, (i) => {
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
    await this.#queue.control({ type: 'update_stream', egressId: info.egressId, add, remove });
    log.info({ egress: info.egressId, added: add.length, removed: remove.length }, 'egress streams updated');
    return updated ?? info;
  }
}
