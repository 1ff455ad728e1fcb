// The worker's side of the gateway's internal egress API (src/egress/EgressTaps.ts). It presents
// the workers' own credential (egress.worker_secret), never a client token.
import { EGRESS_INTERNAL_PATH, type EgressSource, type KeepaliveResult, type OpenResult, type ReplayMode, type TapTarget } from '../contract.ts';
import type { RoomSnapshot } from '../composite/types.ts';

export class TapError extends Error {
  override name = 'TapError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class TapClient {
  readonly #base: string;
  readonly #secret: string;

  constructor(gatewayUrl: string, workerSecret: string) {
    this.#base = `${gatewayUrl.replace(/\/+$/, '')}${EGRESS_INTERNAL_PATH}`;
    this.#secret = workerSecret;
  }

  async #call<T>(method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, {
        method,
        headers: { Authorization: `Bearer ${this.#secret}`, 'Content-Type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new TapError(`gateway unreachable at ${this.#base}: ${(err as Error).message}`, 0);
    }
    const text = await res.text();
    if (!res.ok) {
      let msg = text;
      try {
        msg = (JSON.parse(text) as { msg?: string }).msg ?? text;
      } catch {
        // not JSON: keep the text
      }
      throw new TapError(`gateway answered ${res.status}: ${msg}`, res.status);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }

  open(egressId: string, room: string, source: EgressSource): Promise<OpenResult> {
    return this.#call('POST', '/open', { egressId, room, source });
  }

  /** `replay`: how the cached pictures of a server-fed track are stamped (src/egress/relayFeed.ts). */
  connect(sessionId: string, targets: TapTarget[], replay: ReplayMode = 'live'): Promise<void> {
    return this.#call('POST', `/${sessionId}/connect`, { targets, replay });
  }

  keepalive(sessionId: string): Promise<KeepaliveResult> {
    return this.#call('POST', `/${sessionId}/keepalive`);
  }

  keyframe(sessionId: string): Promise<void> {
    return this.#call('POST', `/${sessionId}/keyframe`);
  }

  /**
   * Room composite: who is in the room and what they send (src/egress/composite/roomSnapshot.ts).
   * `roomId` is the room instance recorded: a room of the same name created since reads as gone.
   */
  roomSnapshot(egressId: string, room: string, roomId: string): Promise<RoomSnapshot> {
    return this.#call('POST', `/room/${encodeURIComponent(room)}`, { egressId, roomId });
  }

  close(sessionId: string): Promise<void> {
    return this.#call('DELETE', `/${sessionId}`);
  }
}
