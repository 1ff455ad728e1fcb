// Signed webhook delivery, LiveKit's wire format: POST WebhookEvent JSON (camelCase) with
// `Authorization: <bare JWT>` whose `sha256` claim is base64(SHA-256(body)).
// Events of one room reach each URL in order; a failing URL retries with backoff without holding
// up other URLs or the API call that caused the event. A room's queue per URL is bounded: behind a
// slow or dead endpoint the oldest waiting event is dropped (logged, counted as `overflow`), so a
// busy room cannot grow the gateway's memory without limit.
import { createHash } from 'node:crypto';
import type { PartialMessage } from '@bufbuild/protobuf';
import { WebhookEvent } from '@livekit/protocol';
import { retry, RetryAbortedError } from '../async.ts';
import { mintToken } from '../auth/tokens.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';

export type WebhookEventName =
  | 'room_started'
  | 'room_finished'
  | 'participant_joined'
  | 'participant_left'
  | 'track_published'
  | 'track_unpublished'
  | 'egress_started'
  | 'egress_updated'
  | 'egress_ended'
  | 'ingress_started'
  | 'ingress_ended'
  | 'agent_job_started'
  | 'agent_job_ended';

export interface WebhookOptions {
  urls: string[];
  apiKey: string;
  apiSecret: string;
  log: Logger;
  metrics: Metrics;
  /** Attempts per event and URL, the first included. */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt up to maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  timeoutMs?: number;
  /** Events waiting per URL and room (the one being sent not counted); past it the oldest is dropped. */
  maxQueue?: number;
}

/** Waiting events per URL and room: minutes of a busy room's events behind a dead endpoint. */
export const WEBHOOK_QUEUE_BOUND = 1000;

/** A POST the endpoint answered with an error status. */
class DeliveryError extends Error {
  readonly retryable: boolean;

  constructor(message: string, retryable: boolean) {
    super(message);
    this.name = 'DeliveryError';
    this.retryable = retryable;
  }
}

interface Queue {
  items: { event: string; body: string }[];
  draining: Promise<void>;
  dropped: number;
}

/** Fields of WebhookEvent other than event, id and createdAt. */
export type WebhookPayload = Omit<PartialMessage<WebhookEvent>, 'event' | 'id' | 'createdAt'>;

export class WebhookNotifier {
  readonly #opts: Required<WebhookOptions>;
  /** url + order key → its waiting events and the loop sending them. */
  readonly #queues = new Map<string, Queue>();
  readonly #abort = new AbortController();

  constructor(opts: WebhookOptions) {
    this.#opts = { maxAttempts: 6, baseDelayMs: 500, maxDelayMs: 15_000, timeoutMs: 5000, maxQueue: WEBHOOK_QUEUE_BOUND, ...opts };
  }

  get enabled(): boolean {
    return this.#opts.urls.length > 0;
  }

  /**
   * Queues an event for every URL and returns at once. `orderKey` (the room name by default) decides
   * which events keep their order relative to each other.
   */
  notify(event: WebhookEventName, payload: WebhookPayload, orderKey = payload.room?.name ?? ''): void {
    if (!this.enabled || this.#abort.signal.aborted) return;
    const message = new WebhookEvent({
      ...payload,
      event,
      id: newId('EV_'),
      createdAt: BigInt(Math.floor(Date.now() / 1000)),
    });
    const body = message.toJsonString();
    for (const url of this.#opts.urls) {
      const key = `${url}\u0000${orderKey}`;
      const existing = this.#queues.get(key);
      if (existing) {
        existing.items.push({ event, body });
        if (existing.items.length > this.#opts.maxQueue) this.#overflow(url, orderKey, existing);
        continue;
      }
      const queue: Queue = { items: [{ event, body }], draining: Promise.resolve(), dropped: 0 };
      this.#queues.set(key, queue);
      queue.draining = this.#drain(key, url, queue);
    }
  }

  /** Events waiting in all queues (metrics, tests). */
  get queued(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.items.length;
    return n;
  }

  #overflow(url: string, orderKey: string, queue: Queue): void {
    const oldest = queue.items.shift()!;
    queue.dropped++;
    this.#opts.metrics.webhookDeliveries.inc({ event: oldest.event, result: 'overflow' });
    // One line per burst, then every 100th: the endpoint is slow, the log need not be flooded.
    if (queue.dropped === 1 || queue.dropped % 100 === 0) {
      this.#opts.log.warn({ url, room: orderKey, dropped: queue.dropped, bound: this.#opts.maxQueue }, 'webhook queue full: oldest events dropped unsent');
    }
  }

  async #drain(key: string, url: string, queue: Queue): Promise<void> {
    for (let next = queue.items.shift(); next; next = queue.items.shift()) {
      await this.#deliver(url, next.event, next.body).catch(() => undefined);
    }
    // Nothing is awaited between the last shift and here: no event can have slipped in.
    this.#queues.delete(key);
  }

  async #deliver(url: string, event: string, body: string): Promise<void> {
    const { log, metrics, maxAttempts, baseDelayMs, maxDelayMs } = this.#opts;
    const sha256 = createHash('sha256').update(body).digest('base64');
    let attempt = 0;
    try {
      await retry(
        async (n) => {
          attempt = n;
          await this.#post(url, body, sha256);
        },
        {
          attempts: maxAttempts,
          backoff: { baseMs: baseDelayMs, maxMs: maxDelayMs, jitter: 0.2 },
          signal: this.#abort.signal,
          retryable: (err) => !(err instanceof DeliveryError) || err.retryable,
          onRetry: (err, n, delayMs) => {
            metrics.webhookDeliveries.inc({ event, result: 'retried' });
            log.info({ url, event, attempt: n, reason: (err as Error).message, retryInMs: Math.round(delayMs) }, 'webhook failed; will retry');
          },
        },
      );
    } catch (err) {
      metrics.webhookDeliveries.inc({ event, result: 'dropped' });
      if (err instanceof RetryAbortedError) log.warn({ url, event, attempt: err.attempt }, 'webhook dropped: gateway shutting down');
      else log.warn({ url, event, attempt, reason: (err as Error).message }, 'webhook dropped');
      return;
    }
    metrics.webhookDeliveries.inc({ event, result: 'delivered' });
    log.debug({ url, event, attempt }, 'webhook delivered');
  }

  /** One POST; throws a DeliveryError for an HTTP failure, the fetch error for a network one. */
  async #post(url: string, body: string, sha256: string): Promise<void> {
    const { apiKey, apiSecret, timeoutMs } = this.#opts;
    // Minted per attempt: a retry after minutes must not carry an expired token.
    const token = await mintToken(apiKey, apiSecret, { sha256, ttl: 300 });
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/webhook+json', Authorization: token, 'User-Agent': 'roomgate' },
      body,
      signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(timeoutMs)]),
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return;
    // Like LiveKit's retryablehttp: a 4xx other than 408/429 will not get better by retrying.
    throw new DeliveryError(`HTTP ${res.status}`, res.status >= 500 || res.status === 408 || res.status === 429);
  }

  /** Waits until every queued event was delivered or dropped, or `timeoutMs` passed. */
  async flush(timeoutMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      (async () => {
        while (this.#queues.size > 0) await Promise.all([...this.#queues.values()].map((q) => q.draining));
      })(),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  /** Flushes briefly, then abandons retries; events still pending are logged by #deliver as dropped. */
  async close(timeoutMs = 3000): Promise<void> {
    await this.flush(timeoutMs);
    this.#abort.abort();
    await this.flush(1000);
  }
}
