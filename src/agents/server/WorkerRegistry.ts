// The connected agent workers as the dispatcher counts them: each one's handle, its load, the jobs
// it runs, the offers it holds and the jobs it is still winding down after the gateway ended them.
import type { GatewayMessage } from '../protocol.ts';
import { pickWorker, type WorkerView } from './dispatchDecisions.ts';

/** A connected worker, as the WebSocket server hands it over. */
export interface WorkerHandle {
  readonly id: string;
  readonly agentName: string;
  readonly capacity: number;
  readonly automatic: boolean;
  /** A worker that said it is full gets no offers (LiveKit workers report status, not a job count). */
  full?(): boolean;
  /**
   * Its jobs end when their participant leaves the room: LiveKit's frameworks never report a job's
   * end, LiveKit's server watches the agent participant instead.
   */
  readonly endsWithParticipant?: boolean;
  send(msg: GatewayMessage): void;
}

export interface WorkerEntry {
  handle: WorkerHandle;
  /** Last reported load, raised locally for each offer until the next report. */
  load: number;
  jobs: Set<string>;
  offers: Set<string>;
  /**
   * Jobs the gateway ended (terminate sent) that the worker has not yet reported done: they still
   * take a slot there, or the next offer would meet "at capacity". Released by the report, or after
   * ENDING_HOLD_MS for a worker that never sends it.
   */
  ending: Map<string, NodeJS.Timeout>;
}

const ENDING_HOLD_MS = 10_000;

/** Slots a worker has taken: running jobs, open offers, and jobs it is still winding down. */
export const busy = (w: WorkerEntry): number => w.jobs.size + w.offers.size + w.ending.size;

export class WorkerRegistry {
  readonly #workers = new Map<string, WorkerEntry>();

  get size(): number {
    return this.#workers.size;
  }

  get(workerId: string): WorkerEntry | undefined {
    return this.#workers.get(workerId);
  }

  has(workerId: string): boolean {
    return this.#workers.has(workerId);
  }

  values(): IterableIterator<WorkerEntry> {
    return this.#workers.values();
  }

  add(handle: WorkerHandle): WorkerEntry {
    const entry: WorkerEntry = { handle, load: 0, jobs: new Set(), offers: new Set(), ending: new Map() };
    this.#workers.set(handle.id, entry);
    return entry;
  }

  /** Forgets the worker and its winding-down holds; the entry says which jobs it had. */
  remove(workerId: string): WorkerEntry | undefined {
    const w = this.#workers.get(workerId);
    if (!w) return undefined;
    this.#workers.delete(workerId);
    for (const t of w.ending.values()) clearTimeout(t);
    return w;
  }

  /** Agent names that have a worker taking every new room. */
  automaticNames(): Set<string> {
    return new Set([...this.#workers.values()].filter((w) => w.handle.automatic).map((w) => w.handle.agentName));
  }

  /** The worker an offer of an `agentName` job goes to (see pickWorker), skipping `passedOver`. */
  pick(agentName: string, passedOver: ReadonlyMap<string, unknown>): WorkerEntry | undefined {
    const views: WorkerView[] = [...this.#workers.values()].map((w) => ({
      id: w.handle.id,
      agentName: w.handle.agentName,
      capacity: w.handle.capacity,
      load: w.load,
      busy: busy(w),
      full: w.handle.full?.() ?? false,
    }));
    const best = pickWorker(views, agentName, passedOver);
    return best && this.#workers.get(best.id);
  }

  /**
   * Keeps a slot taken on `w` for a job the gateway ended until the worker reports it (`release`),
   * or ENDING_HOLD_MS for one that never does; `freed` runs when the hold lapses.
   */
  hold(w: WorkerEntry, jobId: string, freed: () => void): void {
    const timer = setTimeout(() => {
      w.ending.delete(jobId);
      freed();
    }, ENDING_HOLD_MS);
    timer.unref();
    w.ending.set(jobId, timer);
  }

  /** The worker reported a job it was winding down: false when it held no such slot. */
  release(w: WorkerEntry, jobId: string): boolean {
    const timer = w.ending.get(jobId);
    if (!timer) return false;
    clearTimeout(timer);
    w.ending.delete(jobId);
    return true;
  }

  /** Shutdown: no hold lapses later. */
  clearHolds(): void {
    for (const w of this.#workers.values()) for (const t of w.ending.values()) clearTimeout(t);
  }
}
