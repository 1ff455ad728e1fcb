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

const tapBase = (gatewayUrl: string) => `${gatewayUrl.replace(/\/+$/, '')}${EGRESS_INTERNAL_PATH}`;

export class TapClient {
  readonly #base: string;
  readonly #secret: string;
  readonly #locate: ((room: string) => Promise<string | undefined>) | undefined;
  /** Each session's gateway: the node that hosts its room, which keeps the session. */
  readonly #sessionBase = new Map<string, string>();

  /**
   * `locate`: the URL of the node hosting a room (several nodes, src/cluster/roomNode.ts), so a worker
   * attached to one node pulls the taps of a room on another; undefined means the configured gateway.
   */
  constructor(gatewayUrl: string, workerSecret: string, locate?: (room: string) => Promise<string | undefined>) {
    this.#base = tapBase(gatewayUrl);
    this.#secret = workerSecret;
    this.#locate = locate;
  }

  async #roomBase(room: string): Promise<string> {
    const url = await this.#locate?.(room).catch(() => undefined);
    return url ? tapBase(url) : this.#base;
  }

  async #call<T>(method: 'POST' | 'DELETE', path: string, body?: unknown, base = this.#base): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, {
        method,
        headers: { Authorization: `Bearer ${this.#secret}`, 'Content-Type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new TapError(`gateway unreachable at ${base}: ${(err as Error).message}`, 0);
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

  async open(egressId: string, room: string, source: EgressSource): Promise<OpenResult> {
    const base = await this.#roomBase(room);
    const result = await this.#call<OpenResult>('POST', '/open', { egressId, room, source }, base);
    if (result.state === 'ready') this.#sessionBase.set(result.sessionId, base);
    return result;
  }

  /** `replay`: how the cached pictures of a server-fed track are stamped (src/egress/relayFeed.ts). */
  connect(sessionId: string, targets: TapTarget[], replay: ReplayMode = 'live'): Promise<void> {
    return this.#call('POST', `/${sessionId}/connect`, { targets, replay }, this.#sessionBase.get(sessionId));
  }

  keepalive(sessionId: string): Promise<KeepaliveResult> {
    return this.#call('POST', `/${sessionId}/keepalive`, undefined, this.#sessionBase.get(sessionId));
  }

  keyframe(sessionId: string): Promise<void> {
    return this.#call('POST', `/${sessionId}/keyframe`, undefined, this.#sessionBase.get(sessionId));
  }

  /**
   * Room composite: who is in the room and what they send (src/egress/composite/roomSnapshot.ts).
   * `roomId` is the room instance recorded: a room of the same name created since reads as gone.
   */
  async roomSnapshot(egressId: string, room: string, roomId: string): Promise<RoomSnapshot> {
    return this.#call('POST', `/room/${encodeURIComponent(room)}`, { egressId, roomId }, await this.#roomBase(room));
  }

  close(sessionId: string): Promise<void> {
    const base = this.#sessionBase.get(sessionId);
    this.#sessionBase.delete(sessionId);
    return this.#call('DELETE', `/${sessionId}`, undefined, base);
  }
}
