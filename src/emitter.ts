// Event emitter typed by an event map (mediasoup's EnhancedEventEmitter idea), with no Node
// dependency so the browser SDK shares it. safeEmit() keeps a throwing listener from breaking the
// emitter's own code path: the error goes to the `onListenerError` handlers instead, or, when
// nobody registered one, to console.error, so a throwing listener is never lost without a trace.

export type EventMap = Record<string, unknown[]>;

// Listeners are stored untyped; the public methods keep each event's argument types.
type Listener = (...args: unknown[]) => void;

export class TypedEmitter<E extends EventMap> {
  readonly #listeners = new Map<keyof E, { fn: Listener; once: boolean }[]>();
  readonly #errorHandlers: ((event: string, err: unknown) => void)[] = [];

  #add(event: keyof E, fn: Listener, once: boolean): this {
    const list = this.#listeners.get(event) ?? [];
    list.push({ fn, once });
    this.#listeners.set(event, list);
    return this;
  }

  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    return this.#add(event, listener as unknown as Listener, false);
  }

  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    return this.#add(event, listener as unknown as Listener, true);
  }

  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    const list = this.#listeners.get(event);
    const i = list?.findIndex((l) => l.fn === (listener as unknown as Listener)) ?? -1;
    if (list && i >= 0) list.splice(i, 1);
    return this;
  }

  safeEmit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    const list = this.#listeners.get(event);
    if (!list) return;
    for (const entry of [...list]) {
      if (entry.once) this.off(event, entry.fn as unknown as (...a: E[K]) => void);
      try {
        (entry.fn as unknown as (...a: E[K]) => void)(...args);
      } catch (err) {
        this.#listenerFailed(event, err);
      }
    }
  }

  #listenerFailed(event: string, err: unknown): void {
    if (this.#errorHandlers.length === 0) {
      // console, not a logger: this module has no dependencies so the browser SDK can share it.
      console.error(`${this.constructor.name}: a '${event}' listener threw`, err);
      return;
    }
    for (const h of this.#errorHandlers) {
      try {
        h(event, err);
      } catch (handlerErr) {
        // The error handler itself failed: both errors are reported rather than one hiding the other.
        console.error(`${this.constructor.name}: the listener-error handler threw on '${event}'`, handlerErr, err);
      }
    }
  }

  onListenerError(handler: (event: string, err: unknown) => void): this {
    this.#errorHandlers.push(handler);
    return this;
  }
}
