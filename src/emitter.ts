// EventEmitter typed by an event map (mediasoup's EnhancedEventEmitter idea). safeEmit() keeps a
// throwing listener from breaking the emitter's own code path: the error goes to `listenererror`.
import { EventEmitter } from 'node:events';

export type EventMap = Record<string, unknown[]>;

export class TypedEmitter<E extends EventMap> {
  readonly #ee = new EventEmitter();

  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#ee.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#ee.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#ee.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  safeEmit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    for (const listener of this.#ee.rawListeners(event)) {
      try {
        (listener as (...a: unknown[]) => void)(...args);
      } catch (err) {
        if (event === 'listenererror') continue;
        this.#ee.emit('listenererror', event, err);
      }
    }
  }

  onListenerError(listener: (event: string, err: unknown) => void): this {
    this.#ee.on('listenererror', listener);
    return this;
  }
}
