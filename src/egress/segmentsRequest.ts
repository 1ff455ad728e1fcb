// The HLS `segments` output and the `image` outputs of an egress request → their JobSpec parts.
// Names follow LiveKit egress (pkg/config/output_segment.go, output_image.go): the playlist and
// the live playlist share one folder; a segment prefix in another folder is a sub-folder of the
// playlist's (or the playlist's folder when the playlist names none); the playlist defaults to the
// segment prefix, then to `{room_name}-{time}-{egress_id}`; the segment prefix defaults to the playlist's name.
// Every refusal names the field.
import { ImageCodec, ImageFileSuffix, SegmentedFileProtocol, SegmentedFileSuffix, type ImageOutput, type SegmentedFileOutput } from '@livekit/protocol';
import { ApiError, invalidArgument } from '../errors.ts';
import type { EncodingSpec, ImagesSpec, SegmentsSpec } from './contract.ts';
import { relativeParts, renderFilepath, storageOf, type S3Defaults, type TemplateValues } from './outputPaths.ts';

/** LiveKit's default when segment_duration is 0. */
export const DEFAULT_SEGMENT_DURATION_S = 4;
/** Longer segments make a player wait that long for the live edge; LiveKit sets no bound. */
export const MAX_SEGMENT_DURATION_S = 60;
/** LiveKit's default when capture_interval is 0 (output_image.go). */
export const DEFAULT_CAPTURE_INTERVAL_S = 10;
export const MAX_CAPTURE_INTERVAL_S = 3600;
const MAX_IMAGE_SIDE = 3840;
const MAX_KEY = 512;

/** The folder part (may be '') and the name part (may be '') of a requested path. */
function split(p: string, field: string): { dir: string; base: string } {
  const parts = relativeParts(p, field);
  const base = /[\\/]$/.test(p) ? '' : (parts.pop() ?? '');
  return { dir: parts.join('/'), base };
}

const join = (dir: string, name: string) => (dir ? `${dir}/${name}` : name);

export interface SegmentLayout {
  dir: string;
  playlistName: string;
  livePlaylistName?: string;
  segmentPrefix: string;
}

/**
 * Where the playlists and segments go, from the rendered request fields. `fallback` names the
 * playlist when neither a playlist name nor a segment prefix is given.
 */
export function segmentLayout(req: { prefix: string; playlist: string; live: string }, fallback: string): SegmentLayout {
  const pl = split(req.playlist, 'segments.playlist_name');
  const lv = split(req.live, 'segments.live_playlist_name');
  const sg = split(req.prefix, 'segments.filename_prefix');
  let dir = pl.dir;
  let segDir = sg.dir;
  if (segDir === dir) segDir = '';
  else if (segDir && !dir) {
    dir = segDir;
    segDir = '';
  }
  if (lv.dir && lv.dir !== dir) {
    throw invalidArgument(`segments.live_playlist_name '${req.live.slice(0, 200)}' must be in the playlist's folder ('${dir}')`, 'segments.live_playlist_name');
  }
  const stripM3u8 = (n: string) => n.replace(/\.m3u8$/i, '');
  const playlistBase = stripM3u8(pl.base) || sg.base || fallback;
  const liveBase = stripM3u8(lv.base);
  const layout: SegmentLayout = {
    dir,
    playlistName: `${playlistBase}.m3u8`,
    ...(liveBase ? { livePlaylistName: `${liveBase}.m3u8` } : {}),
    segmentPrefix: join(segDir, sg.base || playlistBase),
  };
  if (layout.livePlaylistName === layout.playlistName) {
    throw invalidArgument(`segments.live_playlist_name must differ from playlist_name (both '${layout.playlistName}')`, 'segments.live_playlist_name');
  }
  for (const [field, key] of [
    ['segments.playlist_name', join(dir, layout.playlistName)],
    ['segments.filename_prefix', join(dir, `${layout.segmentPrefix}_00000000000000000.ts`)],
  ] as const) {
    if (key.length > MAX_KEY) throw invalidArgument(`${field} makes object names longer than ${MAX_KEY} characters`, field);
  }
  return layout;
}

/** `{room_name}-{time}-{egress_id}`, made safe as one file name (unique per egress). */
function defaultName(v: TemplateValues): string {
  return relativeParts(renderFilepath(v.egressId ? '{room_name}-{time}-{egress_id}' : '{room_name}-{time}', v), 'room_name').join('_') || 'egress';
}

export function segmentsFrom(out: SegmentedFileOutput, v: TemplateValues, defaults: S3Defaults): SegmentsSpec {
  if (out.protocol !== SegmentedFileProtocol.DEFAULT_SEGMENTED_FILE_PROTOCOL && out.protocol !== SegmentedFileProtocol.HLS_PROTOCOL) {
    throw invalidArgument(`segments.protocol ${String(out.protocol)} is not a segmented file protocol; use HLS_PROTOCOL`, 'segments.protocol');
  }
  if (out.filenameSuffix !== SegmentedFileSuffix.INDEX && out.filenameSuffix !== SegmentedFileSuffix.TIMESTAMP) {
    throw invalidArgument(`segments.filename_suffix ${String(out.filenameSuffix)} is not INDEX or TIMESTAMP`, 'segments.filename_suffix');
  }
  const duration = out.segmentDuration || DEFAULT_SEGMENT_DURATION_S;
  if (duration > MAX_SEGMENT_DURATION_S) {
    throw invalidArgument(`segments.segment_duration must be between 1 and ${MAX_SEGMENT_DURATION_S} seconds (got ${duration})`, 'segments.segment_duration');
  }
  const render = (t: string) => renderFilepath(t, v);
  const layout = segmentLayout({ prefix: render(out.filenamePrefix), playlist: render(out.playlistName), live: render(out.livePlaylistName) }, defaultName(v));
  const s3 = storageOf(out.output, defaults);
  return {
    ...layout,
    suffix: out.filenameSuffix === SegmentedFileSuffix.TIMESTAMP ? 'timestamp' : 'index',
    segmentDuration: duration,
    ...(s3 ? { s3 } : {}),
  };
}

/** Width or height of an image output: 0 (the picture's) or an even size the encoder takes. */
function imageSide(n: number, field: string): number {
  if (n === 0) return 0;
  if (!Number.isInteger(n) || n < 16 || n > MAX_IMAGE_SIDE) throw invalidArgument(`${field} must be 0 (the video's) or between 16 and ${MAX_IMAGE_SIDE} (got ${n})`, field);
  if (n % 2 !== 0) throw invalidArgument(`${field} must be even (got ${n}): snapshots are 4:2:0 pictures`, field);
  return n;
}

export function imagesFrom(outs: ImageOutput[], v: TemplateValues, defaults: S3Defaults): ImagesSpec[] {
  const seen = new Map<string, number>();
  return outs.map((out, i) => {
    const f = (name: string) => `image_outputs[${i}].${name}`;
    if (out.imageCodec !== ImageCodec.IC_DEFAULT && out.imageCodec !== ImageCodec.IC_JPEG) {
      throw new ApiError('unimplemented', `${f('image_codec')} ${ImageCodec[out.imageCodec] ?? String(out.imageCodec)} is not supported; use IC_JPEG`);
    }
    const suffix =
      out.filenameSuffix === ImageFileSuffix.IMAGE_SUFFIX_INDEX ? 'index'
      : out.filenameSuffix === ImageFileSuffix.IMAGE_SUFFIX_TIMESTAMP ? 'timestamp'
      : out.filenameSuffix === ImageFileSuffix.IMAGE_SUFFIX_NONE_OVERWRITE ? 'none'
      : undefined;
    if (!suffix) throw invalidArgument(`${f('filename_suffix')} ${String(out.filenameSuffix)} is not INDEX, TIMESTAMP or NONE_OVERWRITE`, f('filename_suffix'));
    const interval = out.captureInterval || DEFAULT_CAPTURE_INTERVAL_S;
    if (interval > MAX_CAPTURE_INTERVAL_S) {
      throw invalidArgument(`${f('capture_interval')} must be between 1 and ${MAX_CAPTURE_INTERVAL_S} seconds (got ${interval})`, f('capture_interval'));
    }
    const width = imageSide(out.width, f('width'));
    const height = imageSide(out.height, f('height'));
    const { dir, base } = split(renderFilepath(out.filenamePrefix, v), f('filename_prefix'));
    const prefix = join(dir, base || defaultName(v));
    if (prefix.length + 24 > MAX_KEY) throw invalidArgument(`${f('filename_prefix')} makes object names longer than ${MAX_KEY} characters`, f('filename_prefix'));
    const s3 = storageOf(out.output, defaults);
    const target = `${s3 ? `s3://${s3.bucket}/` : ''}${prefix}`;
    const other = seen.get(target);
    if (other !== undefined) throw invalidArgument(`${f('filename_prefix')} '${prefix}' is already used by image_outputs[${other}]; their images would overwrite each other`, f('filename_prefix'));
    seen.set(target, i);
    return { prefix, suffix, captureInterval: interval, width, height, ...(s3 ? { s3 } : {}) };
  });
}

/**
 * The encoding of an egress with segments: always encoded (segments cut at keyframes the encoder
 * places; LiveKit also encodes then), and unless the request set a keyframe interval, one that
 * divides the segment duration so every segment is as long as asked.
 */
export function encodingForSegments(e: EncodingSpec, segments: SegmentsSpec, keyFrameIntervalAsked: boolean): EncodingSpec {
  const out = { ...e, passthroughAllowed: false };
  if (keyFrameIntervalAsked || !Number.isInteger(out.keyFrameInterval)) return out;
  let k = Math.max(1, Math.min(out.keyFrameInterval, segments.segmentDuration));
  while (segments.segmentDuration % k !== 0) k--;
  return { ...out, keyFrameInterval: k };
}
