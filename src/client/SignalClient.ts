// The client half of the signaling protocol, shared by the browser SDK and the Node participant:
// request/response correlation, typed server events, the join handshake. Works with the browser's
// WebSocket and with the `ws` package (both implement addEventListener/send/close).
import type { Method, RequestData, ServerEventName, ServerEvents, ServerMessage } from '../signaling/protocol.ts';

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (ev: { code: number; reason: string }) => void): void;
  addEventListener(type: 'open' | 'error', listener: (ev: unknown) => void): void;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

/** An error response from the gateway, with its protocol error code. */
export class SignalError extends Error {
  override name = 'SignalError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Handler<K extends ServerEventName> = (data: ServerEvents[K]) => void;

export class SignalClient {
  readonly #ws: WebSocketLike;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }>();
  readonly #handlers = new Map<string, Set<(data: never) => void>>();
  readonly #closeHandlers = new Set<(code: number, reason: string) => void>();
  #nextId = 1;
  #closed = false;
  /** Events received after `joined` but before the owner listens; release() delivers them in order. */
  #held: { event: string; data: unknown }[] | undefined = [];

  private constructor(ws: WebSocketLike) {
    this.#ws = ws;
    // Errors (refused connection, reset) end in 'close', which is handled; without a listener
    // the `ws` package would throw them.
    ws.addEventListener('error', () => undefined);
    ws.addEventListener('message', (ev) => this.#onMessage(ev.data));
    ws.addEventListener('close', (ev) => {
      this.#closed = true;
      for (const [, p] of this.#pending) {
        clearTimeout(p.timer);
        p.reject(new SignalError('unavailable', `connection closed (${ev.code} ${ev.reason})`));
      }
      this.#pending.clear();
      for (const h of this.#closeHandlers) h(ev.code, ev.reason);
    });
  }

  /**
   * Opens /rtc and waits for `joined`. Rejects with the gateway's error (bad token, room full…).
   * `url` is the gateway's http(s) or ws(s) base URL.
   */
  static connect(
    url: string,
    token: string,
    factory: WebSocketFactory,
    opts: { reconnect?: boolean; timeoutMs?: number } = {},
  ): Promise<{ client: SignalClient; joined: ServerEvents['joined'] }> {
    const base = url.replace(/^http/, 'ws').replace(/\/+$/, '');
    const wsUrl = `${base}/rtc?access_token=${encodeURIComponent(token)}${opts.reconnect ? '&reconnect=1' : ''}`;
    const ws = factory(wsUrl);
    const client = new SignalClient(ws);
    return new Promise((resolve, reject) => {
      let error: SignalError | undefined;
      const timer = setTimeout(() => {
        reject(new SignalError('unavailable', 'timed out waiting for the join response'));
        ws.close();
      }, opts.timeoutMs ?? 10_000);
      const off = client.on('joined', (joined) => {
        clearTimeout(timer);
        off();
        resolve({ client, joined });
      });
      client.#joinError = (e) => (error = e);
      client.onClose((code, reason) => {
        clearTimeout(timer);
        reject(error ?? new SignalError('unavailable', `connection closed before joining (${code} ${reason})`));
      });
    });
  }

  #joinError: ((e: SignalError) => void) | undefined;

  get closed(): boolean {
    return this.#closed;
  }

  on<K extends ServerEventName>(event: K, handler: Handler<K>): () => void {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler as (data: never) => void);
    return () => set.delete(handler as (data: never) => void);
  }

  onClose(handler: (code: number, reason: string) => void): () => void {
    this.#closeHandlers.add(handler);
    return () => this.#closeHandlers.delete(handler);
  }

  request<M extends Method>(method: M, data: RequestData<M>, timeoutMs = 10_000): Promise<unknown> {
    if (this.#closed) return Promise.reject(new SignalError('unavailable', 'connection is closed'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new SignalError('unavailable', `${method} timed out`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ id, method, data }));
    });
  }

  #deliver(event: string, data: unknown): void {
    for (const h of [...(this.#handlers.get(event) ?? [])]) (h as (d: unknown) => void)(data);
  }

  /**
   * Starts delivering events. Until then they are kept, so nothing sent right after `joined` is
   * lost while the caller sets up (loading the device, registering handlers).
   */
  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const m of held) this.#deliver(m.event, m.data);
  }

  close(): void {
    this.#ws.close(1000, 'client closed');
  }

  /** Drops the socket as a network failure would (tests of reconnect). */
  dropForTesting(): void {
    this.#ws.close(4000, 'dropped for testing');
  }

  #onMessage(raw: unknown): void {
    let msg: ServerMessage;
    try {
      msg = JSON.parse(typeof raw === 'string' ? raw : String(raw)) as ServerMessage;
    } catch {
      return;
    }
    if ('event' in msg) {
      if (this.#held && msg.event !== 'joined') this.#held.push(msg);
      else this.#deliver(msg.event, msg.data);
      return;
    }
    if (msg.id === null) {
      // An error not tied to a request: a join failure or a frame the server could not read.
      if (!msg.ok) this.#joinError?.(new SignalError(msg.error.code, msg.error.message));
      return;
    }
    const pending = this.#pending.get(msg.id);
    if (!pending) return;
    this.#pending.delete(msg.id);
    clearTimeout(pending.timer);
    if (msg.ok) pending.resolve(msg.data);
    else pending.reject(new SignalError(msg.error.code, msg.error.message));
  }
}
