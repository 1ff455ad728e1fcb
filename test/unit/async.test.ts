import { afterEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, KeyedQueue, retry, RetryAbortedError, sleep } from '../../src/async.ts';

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('sleep', () => {
  it('resolves after the delay', async () => {
    vi.useFakeTimers();
    let done = false;
    const p = sleep(100).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(99);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await p;
    expect(done).toBe(true);
  });

  it('resolves at once when the signal aborts, or was aborted before', async () => {
    vi.useFakeTimers();
    const ac = new AbortController();
    let done = false;
    const p = sleep(60_000, ac.signal).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(10);
    expect(done).toBe(false);
    ac.abort();
    await p;
    expect(done).toBe(true);
    expect(vi.getTimerCount()).toBe(0); // the timer went with the abort
    await sleep(60_000, ac.signal); // already aborted: no wait at all
  });

  it('leaves no abort listener behind once the timer fired', async () => {
    const ac = new AbortController();
    const add = vi.spyOn(ac.signal, 'addEventListener');
    const remove = vi.spyOn(ac.signal, 'removeEventListener');
    for (let i = 0; i < 3; i++) await sleep(1, ac.signal);
    expect(add).toHaveBeenCalledTimes(3);
    expect(remove).toHaveBeenCalledTimes(3);
  });
});

describe('backoffDelay', () => {
  it('doubles from the base up to the cap', () => {
    const b = { baseMs: 500, maxMs: 15_000 };
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, b))).toEqual([500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
    expect(backoffDelay(3, { baseMs: 100, maxMs: 10_000, factor: 3 })).toBe(900);
  });

  it('spreads by the jitter fraction around the capped delay', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect(backoffDelay(2, { baseMs: 500, maxMs: 15_000, jitter: 0.2 })).toBeCloseTo(800);
    vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    expect(backoffDelay(9, { baseMs: 500, maxMs: 15_000, jitter: 0.2 })).toBeCloseTo(18_000, 0);
  });

  it('follows a schedule and repeats its last entry', () => {
    const schedule = [500, 1000, 2000, 5000];
    expect([1, 2, 3, 4, 5, 50].map((n) => backoffDelay(n, schedule))).toEqual([500, 1000, 2000, 5000, 5000, 5000]);
  });

  it('refuses an attempt below 1 and an empty schedule', () => {
    expect(() => backoffDelay(0, { baseMs: 1, maxMs: 1 })).toThrow(TypeError);
    expect(() => backoffDelay(1, [])).toThrow(TypeError);
  });
});

describe('retry', () => {
  it('returns the first success and waits the backoff between attempts', async () => {
    vi.useFakeTimers();
    const calls: number[] = [];
    const retries: [number, number][] = [];
    const p = retry(
      async (attempt) => {
        calls.push(Date.now());
        if (attempt < 3) throw new Error(`fail ${attempt}`);
        return 'ok';
      },
      { attempts: 5, backoff: { baseMs: 100, maxMs: 1000 }, onRetry: (_err, attempt, delayMs) => retries.push([attempt, delayMs]) },
    );
    await vi.runAllTimersAsync();
    expect(await p).toBe('ok');
    expect(calls.map((t) => t - calls[0]!)).toEqual([0, 100, 300]);
    expect(retries).toEqual([
      [1, 100],
      [2, 200],
    ]);
  });

  it('throws the last failure once the attempts are used up', async () => {
    let n = 0;
    await expect(
      retry(
        async (attempt) => {
          n++;
          throw new Error(`fail ${attempt}`);
        },
        { attempts: 3, backoff: [0] },
      ),
    ).rejects.toThrow('fail 3');
    expect(n).toBe(3);
  });

  it('stops at a failure that is not retryable', async () => {
    let n = 0;
    const fn = async (): Promise<never> => {
      n++;
      throw new TypeError('bad request');
    };
    await expect(retry(fn, { attempts: 5, backoff: [0], retryable: (err) => !(err instanceof TypeError) })).rejects.toThrow('bad request');
    expect(n).toBe(1);
  });

  it('with waitFirst, waits before the first attempt and steps through the schedule', async () => {
    vi.useFakeTimers();
    const start = Date.now();
    const at: number[] = [];
    const p = retry(
      async (attempt) => {
        at.push(Date.now() - start);
        if (attempt < 3) throw new Error('down');
      },
      { attempts: Infinity, backoff: [200, 500], waitFirst: true },
    );
    await vi.runAllTimersAsync();
    await p;
    expect(at).toEqual([200, 700, 1200]);
  });

  it('an abort cuts the wait short and rejects with RetryAbortedError naming the attempt not made', async () => {
    vi.useFakeTimers();
    const ac = new AbortController();
    let n = 0;
    const p = retry(
      async () => {
        n++;
        throw new Error('down');
      },
      { attempts: Infinity, backoff: { baseMs: 60_000, maxMs: 60_000 }, signal: ac.signal },
    );
    const settled = p.catch((err: unknown) => err);
    await vi.advanceTimersByTimeAsync(1);
    ac.abort();
    const err = await settled;
    expect(err).toBeInstanceOf(RetryAbortedError);
    expect((err as RetryAbortedError).attempt).toBe(2);
    expect(n).toBe(1);
  });

  it('refuses fewer than one attempt', async () => {
    await expect(retry(async () => 1, { attempts: 0, backoff: [0] })).rejects.toThrow(TypeError);
  });
});

describe('KeyedQueue', () => {
  const deferred = (): { promise: Promise<void>; resolve: () => void } => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  };

  it('runs one task at a time per key, in order, and keys independently', async () => {
    const q = new KeyedQueue<string>();
    const log: string[] = [];
    const gate = deferred();
    const a1 = q.run('a', async () => {
      log.push('a1 start');
      await gate.promise;
      log.push('a1 end');
      return 1;
    });
    const a2 = q.run('a', () => {
      log.push('a2');
      return 2;
    });
    const b1 = q.run('b', () => {
      log.push('b1');
      return 3;
    });
    expect(await b1).toBe(3);
    expect(log).toEqual(['a1 start', 'b1']);
    expect(q.busy('a')).toBe(true);
    gate.resolve();
    expect(await Promise.all([a1, a2])).toEqual([1, 2]);
    expect(log).toEqual(['a1 start', 'b1', 'a1 end', 'a2']);
  });

  it('a failed task rejects its own promise only, and the key is dropped once idle', async () => {
    const q = new KeyedQueue<number>();
    const failed = q.run(7, () => Promise.reject(new Error('boom')));
    const next = q.run(7, () => 'after');
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe('after');
    await q.idle();
    expect(q.size).toBe(0);
    expect(q.busy(7)).toBe(false);
  });

  it('idle() waits for every queued task and never rejects', async () => {
    const q = new KeyedQueue<string>();
    const gate = deferred();
    let done = false;
    q.run('x', () => gate.promise.then(() => (done = true))).catch(() => undefined);
    q.run('y', () => Promise.reject(new Error('ignored'))).catch(() => undefined);
    const idle = q.idle();
    gate.resolve();
    await idle;
    expect(done).toBe(true);
  });
});
