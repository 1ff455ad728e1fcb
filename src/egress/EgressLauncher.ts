// The one place an egress starts from a validated request: the record is written (EGRESS_STARTING),
// the job queued and egress_started sent. The Start*Egress handlers and auto egress (a room created
// with an egress config) both come here, so an auto recording is indistinguishable from a requested one.
import type { EgressInfo } from '@livekit/protocol';
import type { Logger } from '../logger.ts';
import type { WebhookNotifier } from '../webhooks/WebhookNotifier.ts';
import type { EgressQueue } from './EgressQueue.ts';
import type { EgressStore } from './EgressStore.ts';
import type { Validated } from './request.ts';

export class EgressLauncher {
  readonly #store: EgressStore;
  readonly #queue: EgressQueue;
  readonly #webhooks: Pick<WebhookNotifier, 'notify'>;
  readonly #log: Logger;

  constructor(opts: { store: EgressStore; queue: EgressQueue; webhooks: Pick<WebhookNotifier, 'notify'>; log: Logger }) {
    this.#store = opts.store;
    this.#queue = opts.queue;
    this.#webhooks = opts.webhooks;
    this.#log = opts.log;
  }

  /** `log` carries the caller's context (the Twirp request's fields, say). */
  async start({ spec, info }: Validated, log: Logger = this.#log): Promise<EgressInfo> {
    await this.#store.put(info);
    await this.#queue.add(spec);
    log.info({ egress: spec.egressId, room: spec.roomName, kind: spec.source.kind, file: spec.file?.filepath, streams: spec.stream?.urls.length ?? 0 }, 'egress queued');
    this.#webhooks.notify('egress_started', { egressInfo: info }, info.roomName);
    return info;
  }
}
