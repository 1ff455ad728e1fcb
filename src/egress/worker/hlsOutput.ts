// The HLS `segments` output. An FFmpeg segmenter writes MPEG-TS segments and its own playlist into
// a staging folder; the publisher reads that playlist (twice a second) and stores each complete
// segment, then the playlists (EVENT, and the live window when asked) rendered from the segments
// stored so far, strictly in that order. A worker killed mid-recording therefore leaves in storage
// a playlist whose every segment is there: it plays up to the last stored segment (at most one
// segment, plus the one being written, is lost), and the worker that takes over the stalled job
// stores the rest of the staging folder (HlsPublisher with `recovering`).
import fs from 'node:fs';
import path from 'node:path';
import { SegmentsInfo } from '@livekit/protocol';
import type { Logger } from '../../logger.ts';
import { Ledger } from '../../storage/Ledger.ts';
import type { BackupObject } from '../../storage/Storage.ts';
import { UploadQueue, type UploadItem } from '../../storage/UploadQueue.ts';
import type { UploadTarget } from '../../storage/UploadTarget.ts';
import type { S3Settings } from '../../storage/settings.ts';
import type { SegmentsSpec } from '../contract.ts';
import { HLS_LOCAL_PLAYLIST, segmentSinkArgs } from './ffmpegArgs.ts';
import { parsePlaylist, renderPlaylist, segmentName, type HlsSegment, type ParsedPlaylist } from './hlsPlaylist.ts';
import { StagedOutput } from './outputs.ts';

const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
/** Attempts per remaining upload at the end before the rest goes to the backup folder. */
const FINAL_ATTEMPTS = 3;

/** What the backup folder offers (Storage). */
export interface ObjectBackup {
  backupObjects(egressId: string, output: string, objects: BackupObject[], s3: S3Settings): Promise<Map<string, string>>;
}

export interface HlsPublisherOptions {
  egressId: string;
  /** The staging folder the segmenter writes. */
  dir: string;
  spec: SegmentsSpec;
  target: UploadTarget;
  backup: ObjectBackup;
  log: Logger;
  /** Taking over a killed worker's folder: what the ledger lists is stored, a missing segment is lost. */
  recovering?: boolean;
  /** A segment was stored (counts changed). */
  onChange?: () => void;
}

export interface HlsResult {
  info: SegmentsInfo;
  /** Some of it waits in the backup folder for S3. */
  backup: boolean;
}

export class HlsPublisher {
  readonly #o: HlsPublisherOptions;
  readonly #queue: UploadQueue;
  readonly #ledger: Ledger;
  /** Ledger entries (recovery only): local name → bytes. */
  readonly #known: Map<string, number>;
  /** Segments of FFmpeg's playlist handled so far. */
  #seen = 0;
  /** Every segment queued or stored, with its stored name and size, in order. */
  readonly #all: (HlsSegment & { size: number })[] = [];
  /** The stored prefix of #all: what the published playlists list. */
  readonly #stored: HlsSegment[] = [];
  readonly #locations = new Map<string, string>();
  #ended = false;

  constructor(o: HlsPublisherOptions) {
    this.#o = o;
    this.#queue = new UploadQueue(o.target, o.log.child({ output: 'segments' }));
    this.#ledger = new Ledger(o.dir);
    this.#known = o.recovering ? this.#ledger.read() : new Map();
  }

  #key(name: string): string {
    return this.#o.spec.dir ? `${this.#o.spec.dir}/${name}` : name;
  }

  #readLocal(): ParsedPlaylist | undefined {
    try {
      return parsePlaylist(fs.readFileSync(path.join(this.#o.dir, HLS_LOCAL_PLAYLIST), 'utf8'));
    } catch {
      return undefined; // not written yet
    }
  }

  /**
   * The segmenter is done with the folder: its playlist says so (end of input), or nothing in the
   * folder changed for `quietMs` (it never got far enough to write a playlist, or was killed too).
   */
  localEnded(quietMs: number): boolean {
    if (this.#readLocal()?.ended) return true;
    let latest = 0;
    try {
      for (const name of fs.readdirSync(this.#o.dir)) latest = Math.max(latest, fs.statSync(path.join(this.#o.dir, name)).mtimeMs);
    } catch {
      return true;
    }
    return Date.now() - latest > quietMs;
  }

  /** Queues the segments FFmpeg completed since the last call, each followed by the playlists. */
  sync(): void {
    const local = this.#readLocal();
    if (!local) return;
    const { spec, log } = this.#o;
    let added = false;
    for (; this.#seen < local.segments.length; this.#seen++) {
      const seg = local.segments[this.#seen]!;
      const stored: HlsSegment = { uri: segmentName(spec.segmentPrefix, this.#seen, spec.suffix, seg.programDateTime), duration: seg.duration, ...(seg.programDateTime !== undefined ? { programDateTime: seg.programDateTime } : {}) };
      const known = this.#known.get(seg.uri);
      if (known !== undefined) {
        this.#all.push({ ...stored, size: known });
        this.#stored.push(stored);
        continue;
      }
      const file = path.join(this.#o.dir, seg.uri);
      let size: number;
      try {
        size = fs.statSync(file).size;
      } catch {
        // Listed but not there: not renamed into place yet (next time) while the segmenter runs;
        // once it has exited (the end, or a kill), gone.
        if (!this.#o.recovering && !this.#ended) break;
        log.warn({ segment: seg.uri }, 'a segment of the stalled recording is missing; the playlist skips it');
        continue;
      }
      this.#all.push({ ...stored, size });
      this.#queue.push({
        key: this.#key(stored.uri),
        contentType: 'video/mp2t',
        file,
        done: () => {
          this.#ledger.add(seg.uri, size);
          this.#stored.push(stored);
          this.#o.onChange?.();
        },
      });
      added = true;
    }
    if (added) this.#pushPlaylists(false);
  }

  #playlists(): { name: string; kind: 'event' | 'live' }[] {
    const { playlistName, livePlaylistName } = this.#o.spec;
    return [{ name: playlistName, kind: 'event' as const }, ...(livePlaylistName ? [{ name: livePlaylistName, kind: 'live' as const }] : [])];
  }

  #render(segments: HlsSegment[], kind: 'event' | 'live', ended: boolean): Buffer {
    return Buffer.from(renderPlaylist(segments, { segmentDuration: this.#o.spec.segmentDuration, kind, ended }));
  }

  #pushPlaylists(ended: boolean): void {
    for (const p of this.#playlists()) {
      const key = this.#key(p.name);
      const item: UploadItem = {
        key,
        contentType: PLAYLIST_TYPE,
        replaceable: true,
        render: () => this.#render(this.#stored, p.kind, ended),
        done: (location) => this.#locations.set(key, location),
      };
      this.#queue.push(item);
    }
  }

  /** SegmentsInfo as it stands (counts of what is stored). */
  info(): SegmentsInfo {
    const { spec, target } = this.#o;
    const live = spec.livePlaylistName ? this.#key(spec.livePlaylistName) : undefined;
    const playlist = this.#key(spec.playlistName);
    const stored = this.#all.slice(0, this.#stored.length);
    return new SegmentsInfo({
      playlistName: playlist,
      livePlaylistName: live ?? '',
      playlistLocation: this.#locations.get(playlist) ?? (this.#stored.length > 0 ? target.location(playlist) : ''),
      livePlaylistLocation: live ? (this.#locations.get(live) ?? (this.#stored.length > 0 ? target.location(live) : '')) : '',
      segmentCount: BigInt(stored.length),
      size: BigInt(stored.reduce((n, s) => n + s.size, 0)),
      duration: BigInt(Math.round(stored.reduce((n, s) => n + s.duration, 0) * 1e9)),
    });
  }

  /**
   * After the segmenter ended: stores the last segments and the final playlists (#EXT-X-ENDLIST).
   * What S3 still refuses after a few attempts goes to the backup folder with final playlists
   * listing every segment, to be uploaded in order later.
   */
  async finish(): Promise<HlsResult> {
    if (this.#ended) return { info: this.info(), backup: false };
    this.#ended = true;
    this.sync();
    if (this.#all.length > 0) this.#pushPlaylists(true);
    const left = await this.#queue.flush(FINAL_ATTEMPTS);
    const s3 = this.#o.spec.s3;
    const leftFiles = left.filter((i): i is UploadItem & { file: string } => i.file !== undefined);
    if (left.length === 0 || !s3) {
      if (left.length > 0) this.#o.log.error({ left: left.length }, 'segments could not be written to the output folder');
      this.#cleanUp(left.length === 0);
      return { info: this.info(), backup: false };
    }
    // The final playlists list all segments: the backup uploads them all before the playlists.
    const objects: BackupObject[] = leftFiles.map((i) => ({ file: i.file, key: i.key, contentType: i.contentType }));
    for (const p of this.#playlists()) {
      const file = path.join(this.#o.dir, `final-${p.kind}.m3u8`);
      fs.writeFileSync(file, this.#render(this.#all, p.kind, true));
      objects.push({ file, key: this.#key(p.name), contentType: PLAYLIST_TYPE });
    }
    const backed = await this.#o.backup.backupObjects(this.#o.egressId, 'segments', objects, s3);
    for (const [key, location] of backed) this.#locations.set(key, location);
    this.#cleanUp(true);
    const info = this.info();
    const all = this.#all;
    info.segmentCount = BigInt(all.length);
    info.size = BigInt(all.reduce((n, s) => n + s.size, 0));
    info.duration = BigInt(Math.round(all.reduce((n, s) => n + s.duration, 0) * 1e9));
    return { info, backup: true };
  }

  #cleanUp(all: boolean): void {
    if (all) fs.rmSync(this.#o.dir, { recursive: true, force: true });
  }
}

export type HlsOutputOptions = Omit<HlsPublisherOptions, 'recovering'>;

/** The segmenter FFmpeg and its publisher, as one sink of the encoded TS. */
export class HlsOutput extends StagedOutput<SegmentsInfo, HlsResult> {
  constructor(o: HlsOutputOptions) {
    super(o.dir, segmentSinkArgs(o.dir, o.spec.segmentDuration), new HlsPublisher(o), o.log);
  }
}
