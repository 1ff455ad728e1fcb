// Every change of an egress record (EgressInfo in Redis) and the webhook it sends, on the gateway
// (EgressService) and on the workers (EgressWorker, EgressRun) alike. A status moves only as
// status.ts's nextStatus says; everything else (stream results, progress, upload locations) is an
// amendment that leaves the status alone.
import type { EgressInfo } from '@livekit/protocol';
import { EgressStatus } from '@livekit/protocol';
import type { WebhookNotifier } from '../webhooks/WebhookNotifier.ts';
import type { EgressStore } from './EgressStore.ts';
import { nextStatus, type StatusEvent } from './status.ts';

export type EgressWebhook = 'egress_started' | 'egress_updated' | 'egress_ended';

/** The webhook an applied event sends (StopEgress's ENDING sends none: the worker's teardown does). */
function webhookOf(event: StatusEvent, status: EgressStatus): EgressWebhook | undefined {
  if (event.type === 'queued') return 'egress_started';
  if (event.type === 'end') return 'egress_ended';
  if (event.type === 'ending') return 'egress_updated';
  if (event.type === 'media') return status === EgressStatus.EGRESS_ACTIVE ? 'egress_updated' : undefined;
  return undefined;
}

export class EgressRecords {
  readonly #store: EgressStore;
  readonly #webhooks: Pick<WebhookNotifier, 'notify'>;

  constructor(opts: { store: EgressStore; webhooks: Pick<WebhookNotifier, 'notify'> }) {
    this.#store = opts.store;
    this.#webhooks = opts.webhooks;
  }

  get store(): EgressStore {
    return this.#store;
  }

  get(egressId: string): Promise<EgressInfo | undefined> {
    return this.#store.get(egressId);
  }

  list(filter: { roomName?: string; egressId?: string; active?: boolean } = {}): Promise<EgressInfo[]> {
    return this.#store.list(filter);
  }

  /** Writes a new record, its status STARTING (egress_started goes out once its job is queued). */
  async create(info: EgressInfo): Promise<void> {
    const status = nextStatus(undefined, { type: 'queued' });
    if (status === undefined) return;
    info.status = status;
    await this.#store.put(info);
  }

  /**
   * Moves the record as `event` says and applies `mutate` with it, then sends the event's webhook.
   * Returns the record as written, or undefined when the event did not apply (no record, or one
   * already final): then nothing is written and no webhook goes out.
   */
  async transition(egressId: string, event: StatusEvent, mutate?: (info: EgressInfo) => void): Promise<EgressInfo | undefined> {
    let next: EgressStatus | undefined;
    const info = await this.#store.update(egressId, (i) => {
      next = nextStatus(i.status, event);
      if (next === undefined) return false;
      i.status = next;
      mutate?.(i);
      return undefined;
    });
    // Not applied, or another process ended the record between the read and the compare-and-set write.
    if (!info || next === undefined || info.status !== next) return undefined;
    const hook = webhookOf(event, info.status);
    if (hook) this.notify(hook, info);
    return info;
  }

  /**
   * Changes what a record reports without moving its status (stream results, progress, upload
   * locations). `final`: a final record may be amended too (an upload retried after the end).
   * Returns the record as stored afterwards.
   */
  amend(egressId: string, mutate: (info: EgressInfo) => void | false, opts: { final?: boolean } = {}): Promise<EgressInfo | undefined> {
    return this.#store.update(egressId, mutate, opts.final ? { allowFinalRewrite: true } : {});
  }

  notify(event: EgressWebhook, info: EgressInfo): void {
    this.#webhooks.notify(event, { egressInfo: info }, info.roomName);
  }
}
