// The participant's signaling connection (its SignalSink) and the resume window: a dropped
// connection leaves the session (transports, tracks) held for a grace period in which a new
// connection may attach; after it, the participant is lost.
import type { ParticipantSignalName, ParticipantSignals, SignalSink } from '../ParticipantTypes.ts';

export class ParticipantSession {
  #sink: SignalSink | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #closed: () => boolean;
  readonly #lost: () => void;

  /** `lost` runs when the grace period ends with no connection attached. */
  constructor(closed: () => boolean, lost: () => void) {
    this.#closed = closed;
    this.#lost = lost;
  }

  attach(sink: SignalSink): void {
    clearTimeout(this.#graceTimer);
    const old = this.#sink;
    this.#sink = sink;
    if (old && old !== sink) old.superseded();
  }

  detach(sink: SignalSink, graceMs: number): void {
    if (this.#sink !== sink || this.#closed()) return;
    this.#sink = undefined;
    clearTimeout(this.#graceTimer);
    this.#graceTimer = setTimeout(() => {
      if (!this.#sink) this.#lost();
    }, graceMs);
  }

  send<K extends ParticipantSignalName>(event: K, data: ParticipantSignals[K]): void {
    this.#sink?.send(event, data);
  }

  /** The session ends: no more resumes, no more signals; the connection it had, to tell why. */
  end(): SignalSink | undefined {
    clearTimeout(this.#graceTimer);
    const sink = this.#sink;
    this.#sink = undefined;
    return sink;
  }
}
