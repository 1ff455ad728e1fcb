// The outputs of one egress run: the recording's file, each stream destination, the HLS segments
// and each image output, all fed the same encoded MPEG-TS (encoded egress and room composite); a
// track egress has only its file, which its own FFmpeg writes. What they report goes into the
// egress record while it runs and when it ends (EgressRun writes it).
import type { EgressInfo, ImagesInfo, SegmentsInfo } from '@livekit/protocol';
import type { Logger } from '../../logger.ts';
import type { Storage } from '../../storage/Storage.ts';
import type { JobProgress, JobSpec } from '../contract.ts';
import { HlsOutput, type HlsResult } from './hlsOutput.ts';
import { ImageOutput, type ImagesResult } from './imageOutput.ts';
import { FileSink, StreamDestination, type Sink } from './outputs.ts';

/** What the outputs left once ended: the stored pieces and why any output failed. */
export interface OutputsResult {
  segments: HlsResult | undefined;
  images: ImagesResult[];
  /** The file writer stopped early with this complaint. */
  fileError: string | undefined;
  /** Segments and image outputs that failed ('segments output: …'). */
  errors: string[];
}

const ms = (t: number): bigint => BigInt(t) * 1_000_000n;

export class RunOutputs {
  readonly #spec: JobSpec;
  readonly #storage: Storage;
  readonly #log: Logger;
  /** Something a result shows changed (a stream failed, a segment was stored): the record follows soon. */
  readonly #onChange: () => void;
  #fileSink: FileSink | undefined;
  readonly #streams = new Map<string, StreamDestination>();
  #segments: HlsOutput | undefined;
  #images: ImageOutput[] = [];
  #localFile: string | undefined;
  /** The recording's name as it is stored (the asked one, numbered when that name was taken). */
  #fileName: string | undefined;

  constructor(opts: { spec: JobSpec; storage: Storage; log: Logger; onChange: () => void }) {
    this.#spec = opts.spec;
    this.#storage = opts.storage;
    this.#log = opts.log;
    this.#onChange = opts.onChange;
  }

  get localFile(): string | undefined {
    return this.#localFile;
  }

  get fileName(): string | undefined {
    return this.#fileName;
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  get fileError(): string | undefined {
    return this.#fileSink?.error;
  }

  /** The local file a track egress's own FFmpeg writes (it has no sinks). */
  useFile(): string {
    const file = this.#spec.file!;
    const local = this.#storage.localFile(this.#spec.egressId, file.filepath, file.s3);
    this.#localFile = local.file;
    this.#fileName = local.name;
    return local.file;
  }

  /** The sinks of the encoded TS, every output of the job. */
  open(): void {
    const spec = this.#spec;
    const storage = this.#storage;
    if (spec.file) {
      const { file, name } = storage.localFile(spec.egressId, spec.file.filepath, spec.file.s3);
      this.#localFile = file;
      this.#fileName = name;
      this.#fileSink = new FileSink(file, spec.file.fileType === 'ogg' ? 'ogg' : 'mp4', this.#log);
    }
    for (const url of spec.stream?.urls ?? []) this.#streams.set(url, new StreamDestination(url, this.#log, this.#onChange));
    if (spec.segments) {
      const dir = storage.stagingDir(spec.egressId, 'segments');
      this.#segments = new HlsOutput({ egressId: spec.egressId, dir, spec: spec.segments, target: storage.target(spec.segments.s3), backup: storage, log: this.#log, onChange: this.#onChange });
    }
    this.#images = (spec.images ?? []).map((im, index) => {
      const dir = storage.stagingDir(spec.egressId, `images-${index}`);
      return new ImageOutput({ egressId: spec.egressId, index, dir, spec: im, target: storage.target(im.s3), backup: storage, log: this.#log, onChange: this.#onChange });
    });
  }

  #sinks(): Sink[] {
    return [...(this.#fileSink ? [this.#fileSink] : []), ...this.#streams.values(), ...(this.#segments ? [this.#segments] : []), ...this.#images];
  }

  /** Encoded TS for every output. */
  write(chunk: Buffer): void {
    for (const s of this.#sinks()) s.write(chunk);
  }

  /** UpdateStream: removed destinations finish, new ones start. True when one was added. */
  updateStream(add: string[], remove: string[], stopping: boolean): boolean {
    for (const url of remove) {
      const d = this.#streams.get(url);
      if (!d) continue;
      this.#streams.delete(url);
      d.end().then(this.#onChange, (err: unknown) => this.#log.warn({ err: (err as Error).message }, 'a removed stream destination did not end cleanly'));
    }
    let added = false;
    for (const url of add) {
      if (this.#streams.has(url) || stopping) continue;
      this.#streams.set(url, new StreamDestination(url, this.#log, this.#onChange));
      added = true;
    }
    return added;
  }

  /** Where the outputs stage their pieces on this host (what a stalled-job recovery reads back). */
  progressFields(): Omit<JobProgress, 'phase'> {
    return {
      ...(this.#localFile ? { localFile: this.#localFile } : {}),
      ...(this.#segments ? { segmentsDir: this.#segments.dir } : {}),
      ...(this.#images.length > 0 ? { imagesDirs: this.#images.map((o) => o.dir) } : {}),
    };
  }

  /** The destinations' own states replace what the record shows for them. */
  streamResults(info: EgressInfo): void {
    const live = new Map([...this.#streams.values()].map((d) => [d.info.url, d.info]));
    info.streamResults = info.streamResults.map((s) => {
      const mine = live.get(s.url);
      if (!mine) return s;
      live.delete(s.url);
      return mine.clone();
    });
    for (const extra of live.values()) info.streamResults.push(extra.clone());
  }

  /** Stream states and the counts of the segments and images stored so far. `startedAt`: ms, 0 before media. */
  liveResults(info: EgressInfo, startedAt: number): void {
    this.streamResults(info);
    if (this.#segments) info.segmentResults = [withTimes(this.#segments.info(), startedAt)];
    if (this.#images.length > 0) info.imageResults = this.#images.map((o) => withTimes(o.info(), startedAt));
    syncLegacyResult(info);
  }

  /** Ends every output: the destinations and the file finish, the segments and images store their last pieces. */
  async end(): Promise<OutputsResult> {
    const [, , segments, images] = await Promise.all([
      Promise.all([...this.#streams.values()].map((d) => d.end())),
      this.#fileSink?.end(),
      this.#segments?.finish(),
      Promise.all(this.#images.map((o) => o.finish())),
    ]);
    return {
      segments,
      images,
      fileError: this.#fileSink?.error,
      errors: [...(this.#segments?.error ? [`segments output: ${this.#segments.error}`] : []), ...this.#images.flatMap((o, n) => (o.error ? [`image output ${n}: ${o.error}`] : []))],
    };
  }

  /** The ended outputs' results in the final record; `startedAt`/`endedAt` ms, 0 when nothing was recorded. */
  static finalResults(info: EgressInfo, result: OutputsResult, startedAt: number, endedAt: number): void {
    if (result.segments) info.segmentResults = [withTimes(result.segments.info, startedAt, endedAt)];
    if (result.images.length > 0) info.imageResults = result.images.map((r) => withTimes(r.info, startedAt, endedAt));
    if (result.segments?.backup || result.images.some((r) => r.backup)) info.backupStorageUsed = true;
    syncLegacyResult(info);
  }
}

function withTimes<T extends SegmentsInfo | ImagesInfo>(x: T, startedAt: number, endedAt = 0): T {
  if (startedAt) x.startedAt = ms(startedAt);
  if (endedAt) x.endedAt = ms(endedAt);
  return x;
}

/** The deprecated `result` oneof repeats the only output's results (set at start when it applies). */
function syncLegacyResult(info: EgressInfo): void {
  if (info.result.case === 'segments' && info.segmentResults[0]) info.result.value = info.segmentResults[0].clone();
}
