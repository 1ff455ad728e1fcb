// The egress status machine, pure: which status an EgressInfo moves to on an event, or none when the
// event does not apply to it. EgressRecords (src/egress/EgressRecords.ts) applies it to every write
// of a status, on the gateway and on the workers alike.
//   (none) ─queued→ STARTING ─media→ ACTIVE ─stop/ending→ ENDING ─end→ COMPLETE | FAILED | ABORTED | LIMIT_REACHED
// A final status never changes again (the store's compare-and-set enforces it across processes too).
import { EgressStatus } from '@livekit/protocol';

export type FinalStatus = EgressStatus.EGRESS_COMPLETE | EgressStatus.EGRESS_FAILED | EgressStatus.EGRESS_ABORTED | EgressStatus.EGRESS_LIMIT_REACHED;

export type StatusEvent =
  /** A request was accepted: the record is created. */
  | { type: 'queued' }
  /** The worker's first media went out. */
  | { type: 'media' }
  /** StopEgress reached a job a worker runs. */
  | { type: 'stop' }
  /** The worker tears its run down (stop, limit, source gone, failure). */
  | { type: 'ending' }
  /** The egress is over, with this outcome. */
  | { type: 'end'; status: FinalStatus };

export const FINAL_STATUSES: ReadonlySet<EgressStatus> = new Set([
  EgressStatus.EGRESS_COMPLETE,
  EgressStatus.EGRESS_FAILED,
  EgressStatus.EGRESS_ABORTED,
  EgressStatus.EGRESS_LIMIT_REACHED,
]);

export const isFinal = (s: EgressStatus): boolean => FINAL_STATUSES.has(s);

/** `current`: the stored status, undefined when there is no record yet. */
export function nextStatus(current: EgressStatus | undefined, event: StatusEvent): EgressStatus | undefined {
  if (current === undefined) return event.type === 'queued' ? EgressStatus.EGRESS_STARTING : undefined;
  if (isFinal(current)) return undefined;
  switch (event.type) {
    case 'queued':
      return undefined; // the record exists: a second start is not a transition
    case 'media':
      // Media that arrives after a stop was asked does not undo the stop.
      return current === EgressStatus.EGRESS_ENDING ? EgressStatus.EGRESS_ENDING : EgressStatus.EGRESS_ACTIVE;
    case 'stop':
    case 'ending':
      return EgressStatus.EGRESS_ENDING;
    case 'end':
      return event.status;
  }
}

/**
 * Why a worker stops a run before its source ends: StopEgress, the duration limit, or the worker
 * stopping (`drain`: gracefully, finishing the egress as StopEgress would; `shutdown`: cut short).
 */
export type StopReason = 'stop' | 'limit' | 'shutdown' | 'drain';

/**
 * How a run ends. `failed`: it failed (an error of the source, FFmpeg or the outputs); `recorded`:
 * media went out. A stop before any media aborts (LiveKit's "stopped before started").
 */
export function endStatus(run: { failed: boolean; stopReason: StopReason | undefined; recorded: boolean }): FinalStatus {
  if (run.failed) return EgressStatus.EGRESS_FAILED;
  if (run.stopReason === 'limit') return EgressStatus.EGRESS_LIMIT_REACHED;
  if (run.stopReason === 'shutdown') return EgressStatus.EGRESS_FAILED;
  if (!run.recorded) return EgressStatus.EGRESS_ABORTED;
  return EgressStatus.EGRESS_COMPLETE;
}
