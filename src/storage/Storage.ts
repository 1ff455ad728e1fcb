// Where finished recordings go. Without S3 they stay in the local output folder. With S3 the file
// (always written locally first) is uploaded with retries; if S3 stays unreachable the file moves
// to the backup folder, the egress reports backupStorageUsed, and a background loop keeps trying
// (the list of waiting files is in Redis, so a restarted worker carries on) until it is uploaded.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { S3Schema, type S3Settings } from '../egress/EgressTypes.ts';
import type { Logger } from '../logger.ts';
import { uploadFile } from './s3.ts';

export interface StoredFile {
  location: string;
  size: number;
  /** The upload failed; the file waits in the backup folder for a retry. */
  backup: boolean;
}

/** The Redis list of files waiting for a retry (EgressStore's pending-uploads hash). */
export interface PendingUploads {
  putPendingUpload(key: string, json: string): Promise<void>;
  deletePendingUpload(key: string): Promise<void>;
  pendingUploads(): Promise<Record<string, string>>;
}

const PendingSchema = z.object({ egressId: z.string(), file: z.string(), key: z.string(), s3: S3Schema, host: z.string() });
type Pending = z.infer<typeof PendingSchema>;

export interface StorageOptions {
  outputDir: string;
  backupDir: string;
  pending: PendingUploads;
  /** Called when a file from the backup folder finally reached S3. */
  onUploaded: (egressId: string, location: string) => Promise<void>;
  log: Logger;
  /** Upload attempts before the file goes to the backup folder. */
  attempts?: number;
  /** First delay of the background retry (doubles up to 60 s). */
  retryBaseMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function contentType(file: string): string {
  const ext = path.extname(file).toLowerCase();
  return ext === '.mp4' ? 'video/mp4' : ext === '.webm' ? 'video/webm' : ext === '.ogg' ? 'audio/ogg' : 'application/octet-stream';
}

export class Storage {
  readonly #opts: Required<StorageOptions>;
  readonly #retrying = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(opts: StorageOptions) {
    this.#opts = { attempts: 3, retryBaseMs: 2000, ...opts };
  }

  /** Where the worker writes a recording while it runs. */
  localPath(egressId: string, filepath: string, s3: S3Settings | undefined): string {
    const p = s3 ? path.join(this.#opts.outputDir, '.staging', egressId, path.basename(filepath)) : path.join(this.#opts.outputDir, filepath);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    return path.resolve(p);
  }

  /** Puts a finished local file where it belongs; never throws for an S3 failure (backup instead). */
  async store(egressId: string, file: string, filepath: string, s3: S3Settings | undefined): Promise<StoredFile> {
    const size = fs.statSync(file).size;
    if (!s3) return { location: file, size, backup: false };
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.#opts.attempts; attempt++) {
      if (attempt > 0) await sleep(1000 * 2 ** (attempt - 1));
      try {
        const location = await uploadFile(s3, filepath, file, contentType(file));
        fs.rmSync(path.dirname(file), { recursive: true, force: true });
        return { location, size, backup: false };
      } catch (err) {
        lastErr = err;
        this.#opts.log.warn({ egress: egressId, attempt: attempt + 1, err: (err as Error).message }, 'upload failed');
      }
    }
    const backup = path.resolve(this.#opts.backupDir, egressId, path.basename(file));
    fs.mkdirSync(path.dirname(backup), { recursive: true });
    fs.renameSync(file, backup);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    const pending: Pending = { egressId, file: backup, key: filepath, s3, host: os.hostname() };
    await this.#opts.pending.putPendingUpload(egressId, JSON.stringify(pending)).catch((err: unknown) =>
      this.#opts.log.error({ egress: egressId, err: (err as Error).message }, 'could not record the pending upload; it is retried while this worker runs'),
    );
    this.#opts.log.warn({ egress: egressId, backup, err: (lastErr as Error | undefined)?.message }, 'S3 unreachable: recording kept in the backup folder, retrying in the background');
    this.#schedule(pending, this.#opts.retryBaseMs);
    return { location: backup, size, backup: true };
  }

  /** Picks up the files this host left waiting (worker start-up). */
  async resumePending(): Promise<number> {
    const all = await this.#opts.pending.pendingUploads();
    let n = 0;
    for (const json of Object.values(all)) {
      const parsed = PendingSchema.safeParse(JSON.parse(json));
      if (!parsed.success || parsed.data.host !== os.hostname() || this.#retrying.has(parsed.data.egressId)) continue;
      this.#schedule(parsed.data, 0);
      n++;
    }
    return n;
  }

  #schedule(p: Pending, delay: number): void {
    if (this.#closed) return;
    const timer = setTimeout(() => void this.#retry(p, delay), delay);
    timer.unref();
    this.#retrying.set(p.egressId, timer);
  }

  async #retry(p: Pending, lastDelay: number): Promise<void> {
    if (this.#closed) return;
    if (!fs.existsSync(p.file)) {
      this.#retrying.delete(p.egressId);
      await this.#opts.pending.deletePendingUpload(p.egressId).catch(() => undefined);
      return;
    }
    try {
      const location = await uploadFile(p.s3, p.key, p.file, contentType(p.file));
      this.#retrying.delete(p.egressId);
      fs.rmSync(path.dirname(p.file), { recursive: true, force: true });
      await this.#opts.pending.deletePendingUpload(p.egressId).catch(() => undefined);
      await this.#opts.onUploaded(p.egressId, location).catch(() => undefined);
      this.#opts.log.info({ egress: p.egressId, location }, 'backed-up recording uploaded');
    } catch (err) {
      const next = Math.min(Math.max(lastDelay * 2, this.#opts.retryBaseMs), 60_000);
      this.#opts.log.debug({ egress: p.egressId, next, err: (err as Error).message }, 'upload retry failed');
      this.#schedule(p, next);
    }
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#retrying.values()) clearTimeout(t);
    this.#retrying.clear();
  }
}
