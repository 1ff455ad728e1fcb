// Where finished recordings go. Without S3 they stay in the local output folder. With S3 the file
// (always written locally first) is uploaded with retries; if S3 stays unreachable the file moves
// to the backup folder, the egress reports backupStorageUsed, and a background loop keeps trying
// (the list of waiting files is in Redis, so a restarted worker carries on) until it is uploaded.
// Outputs stored piece by piece while they record (HLS, images) use target() and a staging folder;
// what they could not store by the end comes here too (backupObjects), as an ordered list.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { S3Schema, type S3Settings } from './settings.ts';
import type { Logger } from '../logger.ts';
import { sleep } from '../time.ts';
import { MAX_NAME_SUFFIX, withNumberSuffix } from './names.ts';
import { moveFileSync } from './move.ts';
import { uploadFileAsNew } from './s3.ts';
import { folderTarget, s3Target, type UploadTarget } from './UploadTarget.ts';

export interface StoredFile {
  location: string;
  /** The name it has (relative to the bucket or output folder): the asked one, or that name numbered when it was taken. */
  name: string;
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

const ObjectSchema = z.object({ file: z.string(), key: z.string(), contentType: z.string() });
export type BackupObject = z.infer<typeof ObjectSchema>;

/** A recording file waiting (keyed by egress id), or the ordered objects of an output (egress id:output). */
const PendingSchema = z.union([
  z.object({ egressId: z.string(), file: z.string(), key: z.string(), s3: S3Schema, host: z.string() }),
  z.object({ egressId: z.string(), output: z.string(), dir: z.string(), objects: z.array(ObjectSchema), s3: S3Schema, host: z.string() }),
]);
type Pending = z.infer<typeof PendingSchema>;
const pendingKey = (p: Pending) => ('output' in p ? `${p.egressId}:${p.output}` : p.egressId);

export interface StorageOptions {
  outputDir: string;
  backupDir: string;
  pending: PendingUploads;
  /** Seals and opens the S3 credentials of what waits in the Redis list (src/egress/jobSecrets.ts); none: kept as they are. */
  secrets?: { seal(value: string): string; unseal(value: string): string };
  /**
   * Called when what waited in the backup folder finally reached S3: the recording file
   * (`output` 'file'), or the objects of another output with the location of each key.
   */
  onUploaded: (egressId: string, location: string, output: string, locations: Map<string, string>) => Promise<void>;
  log: Logger;
  /** Upload attempts before the file goes to the backup folder. */
  attempts?: number;
  /** First delay of the background retry (doubles up to 60 s). */
  retryBaseMs?: number;
}

export function contentType(file: string): string {
  const ext = path.extname(file).toLowerCase();
  const types: Record<string, string> = {
    '.mp4': 'video/mp4',
    '.webm': 'video/webm',
    '.ogg': 'audio/ogg',
    '.ts': 'video/mp2t',
    '.m3u8': 'application/vnd.apple.mpegurl',
    '.jpeg': 'image/jpeg',
    '.jpg': 'image/jpeg',
  };
  return types[ext] ?? 'application/octet-stream';
}

const withS3 = <T extends { s3: S3Settings }>(p: T, f: (v: string) => string): T => ({
  ...p,
  s3: { ...p.s3, accessKey: f(p.s3.accessKey), secret: f(p.s3.secret), sessionToken: f(p.s3.sessionToken) },
});

export class Storage {
  readonly #opts: Required<Omit<StorageOptions, 'secrets'>> & Pick<StorageOptions, 'secrets'>;
  readonly #retrying = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(opts: StorageOptions) {
    this.#opts = { attempts: 3, retryBaseMs: 2000, ...opts };
  }

  /**
   * Where the worker writes a recording while it runs, and the name it has. With S3, a staging
   * file of this egress (the object's name is settled when it is uploaded); without, the file in
   * the output folder, created here exclusively: `filepath`, or `filepath` numbered (`-1`, `-2`, …)
   * when another file has that name, so no egress ever writes over another's recording.
   */
  localFile(egressId: string, filepath: string, s3: S3Settings | undefined): { file: string; name: string } {
    if (s3) {
      const file = path.resolve(this.#opts.outputDir, '.staging', egressId, path.basename(filepath));
      fs.mkdirSync(path.dirname(file), { recursive: true });
      return { file, name: filepath };
    }
    for (let n = 0; n <= MAX_NAME_SUFFIX; n++) {
      const name = withNumberSuffix(filepath, n);
      const file = path.resolve(this.#opts.outputDir, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      try {
        fs.closeSync(fs.openSync(file, 'wx'));
        return { file, name };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    throw new Error(`${filepath} and ${MAX_NAME_SUFFIX} numbered names after it all exist in the output folder`);
  }

  /** A fresh folder where an output that is stored piece by piece writes first (kept across a kill). */
  stagingDir(egressId: string, output: string): string {
    const dir = path.resolve(this.#opts.outputDir, '.staging', `${egressId}.${output}`);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** Where such an output's pieces go: the bucket, or the output folder without S3. */
  target(s3: S3Settings | undefined): UploadTarget {
    return s3 ? s3Target(s3) : folderTarget(this.#opts.outputDir);
  }

  /**
   * The pieces of an output that S3 did not take by the end: moved to the backup folder (in their
   * order; the caller's staging folder may then go) and uploaded in the background like a
   * recording file. Returns the backup location of each key.
   */
  async backupObjects(egressId: string, output: string, objects: BackupObject[], s3: S3Settings): Promise<Map<string, string>> {
    const dir = path.resolve(this.#opts.backupDir, `${egressId}.${output}`);
    fs.mkdirSync(dir, { recursive: true });
    const moved = objects.map((o, i) => {
      const file = path.join(dir, `${String(i).padStart(6, '0')}-${path.basename(o.file)}`);
      moveFileSync(o.file, file);
      return { ...o, file };
    });
    const pending: Pending = { egressId, output, dir, objects: moved, s3, host: os.hostname() };
    await this.#opts.pending.putPendingUpload(pendingKey(pending), this.#stored(pending)).catch((err: unknown) =>
      this.#opts.log.error({ egress: egressId, output, err: (err as Error).message }, 'could not record the pending upload; it is retried while this worker runs'),
    );
    this.#opts.log.warn({ egress: egressId, output, backup: dir, objects: moved.length }, 'S3 unreachable: output kept in the backup folder, retrying in the background');
    this.#schedule(pending, this.#opts.retryBaseMs);
    return new Map(moved.map((o) => [o.key, o.file]));
  }

  /** Puts a finished local file where it belongs; never throws for an S3 failure (backup instead). */
  async store(egressId: string, file: string, filepath: string, s3: S3Settings | undefined): Promise<StoredFile> {
    const size = fs.statSync(file).size;
    if (!s3) return { location: file, name: path.relative(path.resolve(this.#opts.outputDir), file).split(path.sep).join('/'), size, backup: false };
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.#opts.attempts; attempt++) {
      if (attempt > 0) await sleep(1000 * 2 ** (attempt - 1));
      try {
        const { key, location } = await uploadFileAsNew(s3, filepath, file, contentType(file));
        fs.rmSync(path.dirname(file), { recursive: true, force: true });
        return { location, name: key, size, backup: false };
      } catch (err) {
        lastErr = err;
        this.#opts.log.warn({ egress: egressId, attempt: attempt + 1, err: (err as Error).message }, 'upload failed');
      }
    }
    const backup = path.resolve(this.#opts.backupDir, egressId, path.basename(file));
    fs.mkdirSync(path.dirname(backup), { recursive: true });
    moveFileSync(file, backup);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    const pending: Pending = { egressId, file: backup, key: filepath, s3, host: os.hostname() };
    await this.#opts.pending.putPendingUpload(egressId, this.#stored(pending)).catch((err: unknown) =>
      this.#opts.log.error({ egress: egressId, err: (err as Error).message }, 'could not record the pending upload; it is retried while this worker runs'),
    );
    this.#opts.log.warn({ egress: egressId, backup, err: (lastErr as Error | undefined)?.message }, 'S3 unreachable: recording kept in the backup folder, retrying in the background');
    this.#schedule(pending, this.#opts.retryBaseMs);
    return { location: backup, name: filepath, size, backup: true };
  }

  /** What waits, as Redis keeps it: the S3 credentials sealed. */
  #stored(p: Pending): string {
    const secrets = this.#opts.secrets;
    return JSON.stringify(secrets ? withS3(p, (v) => secrets.seal(v)) : p);
  }

  /** Picks up the files this host left waiting (worker start-up). */
  async resumePending(): Promise<number> {
    const all = await this.#opts.pending.pendingUploads();
    let n = 0;
    for (const json of Object.values(all)) {
      let parsed;
      try {
        parsed = PendingSchema.safeParse(JSON.parse(json));
      } catch {
        continue;
      }
      if (!parsed.success || parsed.data.host !== os.hostname() || this.#retrying.has(pendingKey(parsed.data))) continue;
      const secrets = this.#opts.secrets;
      let pending: Pending;
      try {
        pending = secrets ? withS3(parsed.data, (v) => secrets.unseal(v)) : parsed.data;
      } catch (err) {
        this.#opts.log.error({ egress: parsed.data.egressId, err: (err as Error).message }, 'a pending upload cannot be opened; it stays in the backup folder');
        continue;
      }
      this.#schedule(pending, 0);
      n++;
    }
    return n;
  }

  #schedule(p: Pending, delay: number): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      // #retry reschedules its own failures; what escapes it is a bug worth a log line.
      this.#retry(p, delay).catch((err: unknown) => this.#opts.log.error({ egress: p.egressId, err: (err as Error).message }, 'upload retry broke off'));
    }, delay);
    timer.unref();
    this.#retrying.set(pendingKey(p), timer);
  }

  /** Uploads what waits; objects in order, each removed once stored (a retry skips those). */
  async #upload(p: Pending): Promise<{ location: string; output: string; locations: Map<string, string> } | undefined> {
    if (!('output' in p)) {
      if (!fs.existsSync(p.file)) return undefined;
      const { location } = await uploadFileAsNew(p.s3, p.key, p.file, contentType(p.file));
      fs.rmSync(path.dirname(p.file), { recursive: true, force: true });
      return { location, output: 'file', locations: new Map([[p.key, location]]) };
    }
    const target = s3Target(p.s3);
    const locations = new Map<string, string>();
    for (const o of p.objects) {
      if (fs.existsSync(o.file)) {
        await target.put(o.key, { file: o.file }, o.contentType);
        fs.rmSync(o.file, { force: true });
      }
      locations.set(o.key, target.location(o.key));
    }
    fs.rmSync(p.dir, { recursive: true, force: true });
    return { location: locations.get(p.objects.at(-1)?.key ?? '') ?? '', output: p.output, locations };
  }

  async #retry(p: Pending, lastDelay: number): Promise<void> {
    if (this.#closed) return;
    const key = pendingKey(p);
    try {
      const done = await this.#upload(p);
      this.#retrying.delete(key);
      await this.#opts.pending.deletePendingUpload(key).catch(() => undefined);
      if (!done) return;
      await this.#opts.onUploaded(p.egressId, done.location, done.output, done.locations).catch(() => undefined);
      this.#opts.log.info({ egress: p.egressId, output: done.output, location: done.location }, 'backed-up recording uploaded');
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
