// mediasoup workers, one per core by default. Rooms get a Router on the least-loaded worker;
// a worker that dies is replaced and its rooms are told through their routers' `workerclose`.
// Each worker's consumers are counted, so a room that outgrows its worker can place new receivers
// on another one (Room's overflow routers, fed by pipeToRouter).
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { ROUTER_MEDIA_CODECS } from '../media/codecs.ts';
import type { Logger } from '../logger.ts';

export interface WorkerPoolOptions {
  count: number;
  rtcMinPort: number;
  rtcMaxPort: number;
  /**
   * Consumers a worker carries before a room on it places new receivers elsewhere.
   * @defaultValue 500 (mediasoup's documented order of magnitude for one worker)
   */
  consumersPerWorker?: number;
  log: Logger;
}

interface Slot {
  worker: types.Worker;
  routers: number;
  /** Consumers on all of this worker's routers, pipe consumers included (they cost the worker too). */
  consumers: number;
}

/** One worker's load, for placement, metrics and tests. */
export interface WorkerLoad {
  pid: number;
  routers: number;
  consumers: number;
}

export class WorkerPool {
  readonly #opts: WorkerPoolOptions;
  readonly #slots: (Slot | undefined)[] = [];
  /** The slot each Router the pool created runs on (a dead worker's slot stays with its routers). */
  readonly #routerSlot = new WeakMap<types.Router, Slot>();
  readonly #budget: number;
  #closed = false;

  private constructor(opts: WorkerPoolOptions) {
    this.#opts = opts;
    this.#budget = opts.consumersPerWorker ?? 500;
  }

  static async create(opts: WorkerPoolOptions): Promise<WorkerPool> {
    if (!Number.isInteger(opts.count) || opts.count < 1) throw new TypeError('count must be a positive integer');
    if (opts.consumersPerWorker !== undefined && (!Number.isInteger(opts.consumersPerWorker) || opts.consumersPerWorker < 1)) {
      throw new TypeError('consumersPerWorker must be a positive integer');
    }
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

  /** Routers and consumers per running worker. */
  get load(): WorkerLoad[] {
    return this.#live().map((s) => ({ pid: s.worker.pid, routers: s.routers, consumers: s.consumers }));
  }

  #live(): Slot[] {
    return this.#slots.filter((s): s is Slot => s !== undefined);
  }

  /** The pid of the worker a Router of this pool runs on (undefined for a router from elsewhere). */
  workerPidOf(router: types.Router): number | undefined {
    return this.#routerSlot.get(router)?.worker.pid;
  }

  /**
   * The worker a new receiver of a room should use: the room's own (`origin`'s) while it carries
   * fewer consumers than the budget, else the running worker with the fewest consumers (the
   * origin's again when it is still the least loaded). Decided when the receiver's transport is
   * created, from the consumers that exist then.
   */
  receiverWorker(origin: types.Router): number | undefined {
    const home = this.#routerSlot.get(origin);
    if (!home || home.worker.closed) return undefined;
    if (home.consumers < this.#budget) return home.worker.pid;
    return this.#live().reduce((best, s) => (s.consumers < best.consumers ? s : best), home).worker.pid;
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
    this.#slots[index] = { worker, routers: 0, consumers: 0 };
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
    const slot = this.#live().reduce<Slot | undefined>((best, s) => (!best || s.routers < best.routers ? s : best), undefined);
    if (!slot) throw new Error('no mediasoup worker is running');
    return this.#createOn(slot, appData, mediaCodecs);
  }

  /** A Router with the rooms' codecs on the worker `pid` (a room's overflow router); throws if that worker is gone. */
  createRouterOn(pid: number, appData: Record<string, unknown> = {}): Promise<types.Router> {
    if (this.#closed) return Promise.reject(new Error('worker pool is closed'));
    const slot = this.#live().find((s) => s.worker.pid === pid);
    if (!slot) return Promise.reject(new Error(`mediasoup worker ${pid} is not running`));
    return this.#createOn(slot, appData, ROUTER_MEDIA_CODECS);
  }

  async #createOn(slot: Slot, appData: Record<string, unknown>, mediaCodecs: types.RtpCodecCapability[]): Promise<types.Router> {
    // Counted before the await, so concurrent calls see each other's choice and spread out.
    slot.routers++;
    let router: types.Router;
    try {
      router = await slot.worker.createRouter({ mediaCodecs, appData });
    } catch (err) {
      slot.routers--;
      throw err;
    }
    router.observer.once('close', () => slot.routers--);
    this.#routerSlot.set(router, slot);
    router.observer.on('newtransport', (transport: types.Transport) => {
      transport.observer.on('newconsumer', (consumer: types.Consumer) => {
        slot.consumers++;
        consumer.observer.once('close', () => slot.consumers--);
      });
    });
    return router;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const slot of this.#slots) slot?.worker.close();
    this.#slots.length = 0;
  }
}
