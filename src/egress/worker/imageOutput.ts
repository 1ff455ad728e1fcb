// An `image` output: an FFmpeg snapshotter writes a JPEG every capture interval into a staging
// folder (each file renamed into place when complete); the publisher stores each new one under
// its LiveKit name (INDEX, TIMESTAMP, or one name overwritten: NONE_OVERWRITE) in order. As with
// HLS, a worker that takes over a killed one's job stores what the staging folder still holds.
import fs from 'node:fs';
import path from 'node:path';
import { ImagesInfo } from '@livekit/protocol';
import type { Logger } from '../../logger.ts';
import { Ledger } from '../../storage/Ledger.ts';
import type { BackupObject } from '../../storage/Storage.ts';
import { UploadQueue } from '../../storage/UploadQueue.ts';
import type { UploadTarget } from '../../storage/UploadTarget.ts';
import type { ImagesSpec } from '../contract.ts';
import { IMAGE_LOCAL_FILE, imageSinkArgs } from './ffmpegArgs.ts';
import { imageName } from './hlsPlaylist.ts';
import type { ObjectBackup } from './hlsOutput.ts';
import { StagedOutput } from './outputs.ts';

const FINAL_ATTEMPTS = 3;

export interface ImagePublisherOptions {
  egressId: string;
  /** Which image output of the egress (0, 1, …): names its backup. */
  index: number;
  dir: string;
  spec: ImagesSpec;
  target: UploadTarget;
  backup: ObjectBackup;
  log: Logger;
  recovering?: boolean;
  onChange?: () => void;
}

export interface ImagesResult {
  info: ImagesInfo;
  backup: boolean;
}

export class ImagePublisher {
  readonly #o: ImagePublisherOptions;
  readonly #queue: UploadQueue;
  readonly #ledger: Ledger;
  /** Local numbers handled so far (queued or, after a kill, found in the ledger). */
  readonly #seen = new Set<number>();
  /** Snapshots taken: FFmpeg numbers them 0, 1, … */
  #count = 0;
  #ended = false;

  constructor(o: ImagePublisherOptions) {
    this.#o = o;
    this.#queue = new UploadQueue(o.target, o.log.child({ output: `images[${o.index}]` }));
    this.#ledger = new Ledger(o.dir);
    if (o.recovering) {
      for (const name of this.#ledger.read().keys()) this.#note(name);
    }
  }

  /** Marks a local name as handled; its number if it is a snapshot. */
  #note(name: string): number | undefined {
    const m = IMAGE_LOCAL_FILE.exec(name);
    if (!m) return undefined;
    const n = Number(m[1]);
    this.#seen.add(n);
    this.#count = Math.max(this.#count, n + 1);
    return n;
  }

  /** Queues the snapshots written since the last call, oldest first. */
  sync(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.#o.dir);
    } catch {
      return;
    }
    const fresh = names
      .map((name) => ({ name, n: Number(IMAGE_LOCAL_FILE.exec(name)?.[1] ?? NaN) }))
      .filter((x) => Number.isFinite(x.n) && !this.#seen.has(x.n))
      .sort((a, b) => a.n - b.n);
    const { spec } = this.#o;
    for (const { name } of fresh) {
      const file = path.join(this.#o.dir, name);
      let stat: fs.Stats;
      try {
        stat = fs.statSync(file);
      } catch {
        continue;
      }
      const n = this.#note(name)!;
      this.#queue.push({
        key: imageName(spec.prefix, n, spec.suffix, stat.mtimeMs),
        contentType: 'image/jpeg',
        file,
        // One name overwritten: only the newest waiting snapshot needs storing.
        replaceable: spec.suffix === 'none',
        done: () => {
          this.#ledger.add(name, stat.size);
          this.#o.onChange?.();
        },
      });
    }
  }

  info(): ImagesInfo {
    return new ImagesInfo({ filenamePrefix: this.#o.spec.prefix, imageCount: BigInt(this.#count) });
  }

  /** After the snapshotter ended: stores the rest (backup folder when S3 still refuses). */
  async finish(): Promise<ImagesResult> {
    if (this.#ended) return { info: this.info(), backup: false };
    this.#ended = true;
    this.sync();
    const left = (await this.#queue.flush(FINAL_ATTEMPTS)).filter((i): i is typeof i & { file: string } => i.file !== undefined);
    const s3 = this.#o.spec.s3;
    if (left.length > 0 && s3) {
      const objects: BackupObject[] = left.map((i) => ({ file: i.file, key: i.key, contentType: i.contentType }));
      await this.#o.backup.backupObjects(this.#o.egressId, `images-${this.#o.index}`, objects, s3);
    } else if (left.length > 0) {
      this.#o.log.error({ left: left.length }, 'snapshots could not be written to the output folder');
      return { info: this.info(), backup: false };
    }
    fs.rmSync(this.#o.dir, { recursive: true, force: true });
    return { info: this.info(), backup: left.length > 0 };
  }
}

export type ImageOutputOptions = Omit<ImagePublisherOptions, 'recovering'>;

/** The snapshotter FFmpeg and its publisher, as one sink of the encoded TS. */
export class ImageOutput extends StagedOutput<ImagesInfo, ImagesResult> {
  constructor(o: ImageOutputOptions) {
    super(o.dir, imageSinkArgs(o.dir, o.spec), new ImagePublisher(o), o.log);
  }
}
