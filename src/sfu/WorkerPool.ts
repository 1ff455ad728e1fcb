// mediasoup workers, one per core by default. Rooms get a Router on the least-loaded worker;
// a worker that dies is replaced and its rooms are told through their routers' `workerclose`.
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { ROUTER_MEDIA_CODECS } from '../media/codecs.ts';
import type { Logger } from '../logger.ts';

export interface WorkerPoolOptions {
  count: number;
  rtcMinPort: number;
  rtcMaxPort: number;
  log: Logger;
}

interface Slot {
  worker: types.Worker;
  routers: number;
}

export class WorkerPool {
  readonly #opts: WorkerPoolOptions;
  readonly #slots: (Slot | undefined)[] = [];
  #closed = false;

  private constructor(opts: WorkerPoolOptions) {
    this.#opts = opts;
  }

  static async create(opts: WorkerPoolOptions): Promise<WorkerPool> {
    if (!Number.isInteger(opts.count) || opts.count < 1) throw new TypeError('count must be a positive integer');
    const pool = new WorkerPool(opts);
    try {
      await Promise.all(Array.from({ length: opts.count }, (_, i) => pool.#start(i)));
    } catch (err) {
      pool.close();
      throw err;
    }
    return pool;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** PIDs of the running mediasoup-worker processes (health and metrics). */
  get workerPids(): number[] {
    return this.#slots.flatMap((s) => (s ? [s.worker.pid] : []));
  }

  /**
   * Each worker gets its own slice of the RTC port range, so two workers never race for the same port.
   * With fewer ports than workers they share the whole range.
   */
  #portRange(index: number): { rtcMinPort: number; rtcMaxPort: number } {
    const { rtcMinPort: min, rtcMaxPort: max, count } = this.#opts;
    const size = Math.floor((max - min + 1) / count);
    if (size < 1) return { rtcMinPort: min, rtcMaxPort: max };
    const lo = min + index * size;
    return { rtcMinPort: lo, rtcMaxPort: index === count - 1 ? max : lo + size - 1 };
  }

  async #start(index: number): Promise<void> {
    const worker = await mediasoup.createWorker({
      logLevel: 'warn',
      ...this.#portRange(index),
      appData: { index },
    });
    if (this.#closed) {
      worker.close(); // a replacement that finished starting after close()
      return;
    }
    this.#slots[index] = { worker, routers: 0 };
    this.#opts.log.debug({ pid: worker.pid, index }, 'mediasoup worker started');
    worker.on('died', (err: Error) => {
      this.#slots[index] = undefined;
      if (this.#closed) return;
      this.#opts.log.error({ pid: worker.pid, index, err: err.message }, 'mediasoup worker died; starting a new one');
      this.#start(index).catch((e: unknown) =>
        this.#opts.log.error({ index, err: (e as Error).message }, 'could not replace mediasoup worker'),
      );
    });
  }

  /** A Router on the least-loaded worker; `mediaCodecs` other than the rooms' only for special routers (WHEP viewers). */
  async createRouter(appData: Record<string, unknown> = {}, mediaCodecs: types.RtpCodecCapability[] = ROUTER_MEDIA_CODECS): Promise<types.Router> {
    if (this.#closed) throw new Error('worker pool is closed');
    const slot = this.#slots
      .filter((s): s is Slot => s !== undefined)
      .reduce<Slot | undefined>((best, s) => (!best || s.routers < best.routers ? s : best), undefined);
    if (!slot) throw new Error('no mediasoup worker is running');
    // Counted before the await, so concurrent calls see each other's choice and spread out.
    slot.routers++;
    try {
      const router = await slot.worker.createRouter({ mediaCodecs, appData });
      router.observer.once('close', () => slot.routers--);
      return router;
    } catch (err) {
      slot.routers--;
      throw err;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const slot of this.#slots) slot?.worker.close();
    this.#slots.length = 0;
  }
}
