// Uploads in order, each one retried until it succeeds before the next starts: a playlist queued
// after its segment therefore never reaches storage before that segment does. While the recording
// runs a failing upload is retried for as long as it takes (1 s doubling to 30 s; the local copy
// stays); at the end flush() gives each remaining item a few attempts and hands back what is left
// for the backup folder.
import fs from 'node:fs';
import type { Logger } from '../logger.ts';
import { sleep } from '../time.ts';
import type { UploadTarget } from './UploadTarget.ts';

export interface UploadItem {
  key: string;
  contentType: string;
  /** A local file, removed once stored (after `done`), … */
  file?: string;
  /** … or content made when the item's turn comes (a playlist of what is stored by then). */
  render?: () => Buffer;
  /** Skipped (its file removed) when the same key comes again later in the queue: only the newest copy matters. */
  replaceable?: boolean;
  /** Called once stored, before the local file is removed. */
  done?: (location: string) => void;
}

const MAX_BACKOFF_MS = 30_000;

export class UploadQueue {
  readonly #target: UploadTarget;
  readonly #log: Logger;
  readonly #items: UploadItem[] = [];
  #loop: Promise<void> | undefined;
  #failures = 0;
  /** Set by flush(): attempts per item before giving up. */
  #giveUpAfter: number | undefined;
  #backoff: AbortController | undefined;

  constructor(target: UploadTarget, log: Logger) {
    this.#target = target;
    this.#log = log;
  }

  get length(): number {
    return this.#items.length;
  }

  push(item: UploadItem): void {
    this.#items.push(item);
    this.#loop ??= this.#run().finally(() => {
      this.#loop = undefined;
    });
  }

  /**
   * Waits for the queue to empty, giving each item `attempts` more tries; returns the items that
   * could not be stored (in order, the failing one first).
   */
  async flush(attempts: number): Promise<UploadItem[]> {
    this.#giveUpAfter = attempts;
    this.#failures = 0;
    this.#backoff?.abort();
    if (this.#items.length > 0) this.#loop ??= this.#run().finally(() => (this.#loop = undefined));
    await this.#loop;
    return this.#items.splice(0);
  }

  async #run(): Promise<void> {
    while (this.#items.length > 0) {
      const item = this.#items[0]!;
      if (item.replaceable && this.#items.some((x, i) => i > 0 && x.key === item.key)) {
        this.#items.shift();
        if (item.file !== undefined) await fs.promises.rm(item.file, { force: true });
        continue;
      }
      try {
        const body = item.file !== undefined ? { file: item.file } : { data: item.render!() };
        const location = await this.#target.put(item.key, body, item.contentType);
        this.#items.shift();
        this.#failures = 0;
        try {
          item.done?.(location);
        } catch (err) {
          this.#log.warn({ key: item.key, err: (err as Error).message }, 'upload bookkeeping failed');
        }
        if (item.file !== undefined) await fs.promises.rm(item.file, { force: true });
      } catch (err) {
        this.#failures++;
        this.#log.warn({ key: item.key, attempt: this.#failures, err: (err as Error).message }, 'upload failed; the local copy stays');
        if (this.#giveUpAfter !== undefined && this.#failures >= this.#giveUpAfter) return;
        const delay = this.#giveUpAfter !== undefined ? 1000 * 2 ** (this.#failures - 1) : Math.min(1000 * 2 ** (this.#failures - 1), MAX_BACKOFF_MS);
        this.#backoff = new AbortController();
        await sleep(delay, this.#backoff.signal);
      }
    }
  }
}
