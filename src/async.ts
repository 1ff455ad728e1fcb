// Async building blocks shared by every layer: an abortable sleep, exponential backoff with a cap,
// a retry loop built on both, and a per-key promise queue. No Node imports: the browser SDK
// (src/client) bundles this file too.

/**
 * Resolves after `ms`, or at once when `signal` aborts (it never rejects: callers check the signal
 * after waking). The abort listener is removed when the timer fires, so a long-lived signal does not
 * collect one listener per sleep.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff: `baseMs · factor^(attempt-1)`, capped at `maxMs`, then spread by ±`jitter`. */
export interface ExponentialBackoff {
  baseMs: number;
  maxMs: number;
  /** @defaultValue 2 */
  factor?: number;
  /** Fraction of the delay to spread it by, so clients that failed together do not retry together. @defaultValue 0 */
  jitter?: number;
}

/**
 * A backoff: exponential, or an explicit schedule whose last entry repeats (reconnect loops whose
 * delays were chosen by hand).
 */
export type Backoff = ExponentialBackoff | readonly number[];

/** The delay after failed attempt `attempt` (1-based). */
export function backoffDelay(attempt: number, backoff: Backoff): number {
  if (!Number.isInteger(attempt) || attempt < 1) throw new TypeError(`attempt must be a positive integer, got ${attempt}`);
  if (isSchedule(backoff)) {
    if (backoff.length === 0) throw new TypeError('a backoff schedule needs at least one delay');
    return backoff[Math.min(attempt, backoff.length) - 1]!;
  }
  const { baseMs, maxMs, factor = 2, jitter = 0 } = backoff;
  const capped = Math.min(maxMs, baseMs * factor ** (attempt - 1));
  return jitter > 0 ? capped * (1 - jitter + Math.random() * 2 * jitter) : capped;
}

function isSchedule(backoff: Backoff): backoff is readonly number[] {
  return Array.isArray(backoff);
}

export interface RetryOptions {
  /** Attempts in all, the first included; `Infinity` retries until `signal` aborts. */
  attempts: number;
  backoff: Backoff;
  /** Stops the loop: checked before every attempt, and it cuts a backoff wait short. */
  signal?: AbortSignal;
  /** Wait one backoff delay before the first attempt too (a reconnect right after a drop). @defaultValue false */
  waitFirst?: boolean;
  /** Whether a failure is worth another attempt. @defaultValue every failure is */
  retryable?: (err: unknown, attempt: number) => boolean;
  /** Called after a retryable failure, before waiting `delayMs` (logs, metrics). */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Thrown by {@link retry} when its signal aborted before an attempt. */
export class RetryAbortedError extends Error {
  /** The attempt that was not made. */
  readonly attempt: number;

  constructor(attempt: number, cause: unknown) {
    super('retry aborted', { cause });
    this.name = 'RetryAbortedError';
    this.attempt = attempt;
  }
}

/**
 * Runs `fn` until it resolves, a failure is not retryable, the attempts are used up (the last
 * failure is thrown) or `signal` aborts ({@link RetryAbortedError}).
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const { attempts, backoff, signal, waitFirst = false, retryable, onRetry } = opts;
  if (!(attempts >= 1)) throw new TypeError(`attempts must be at least 1, got ${attempts}`);
  if (waitFirst) await sleep(backoffDelay(1, backoff), signal);
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw new RetryAbortedError(attempt, signal.reason);
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || (retryable && !retryable(err, attempt))) throw err;
      // With waitFirst the first wait used delay 1, so the one after attempt n uses delay n+1.
      const delayMs = backoffDelay(waitFirst ? attempt + 1 : attempt, backoff);
      onRetry?.(err, attempt, delayMs);
      await sleep(delayMs, signal);
    }
  }
}

const settle = (): undefined => undefined;

/**
 * Runs tasks one at a time per key, in the order they were queued; different keys run concurrently.
 * A failed task rejects its own promise only: the next task of that key still runs.
 */
export class KeyedQueue<K = string> {
  /** The last queued task of each busy key, settled either way. Removed once the key is idle. */
  readonly #tails = new Map<K, Promise<void>>();

  run<T>(key: K, task: () => Promise<T> | T): Promise<T> {
    const result = (this.#tails.get(key) ?? Promise.resolve()).then(task);
    const tail: Promise<void> = result.then(settle, settle).finally(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    this.#tails.set(key, tail);
    return result;
  }

  /** Whether `key` has a task queued or running. */
  busy(key: K): boolean {
    return this.#tails.has(key);
  }

  /** Keys with a task queued or running. */
  get size(): number {
    return this.#tails.size;
  }

  /** Resolves when every task queued so far has settled (never rejects). */
  async idle(): Promise<void> {
    await Promise.all(this.#tails.values());
  }
}
