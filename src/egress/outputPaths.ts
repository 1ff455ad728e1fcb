// Where an egress output goes, as a request names it: the S3 settings (request or config), the
// filename templates ({room_name}, {time}, …) and the relative paths they render to. Shared by every
// output kind (file, HLS segments, images) so each refuses a bad bucket or a `..` the same way.
import type { S3Upload } from '@livekit/protocol';
import { z } from 'zod';
import { ApiError, invalidArgument } from '../errors.ts';
import type { S3Settings } from '../storage/settings.ts';

/** Config defaults for S3 (used only when a request names no S3 storage). */
export interface S3Defaults {
  bucket?: string | undefined;
  region?: string | undefined;
  endpoint?: string | undefined;
  access_key?: string | undefined;
  secret?: string | undefined;
  force_path_style: boolean;
}

/** S3 bucket naming rules (AWS): 3–63 chars, lowercase letters, digits, dots, hyphens, no IP look-alike. */
const bucketName = z
  .string()
  .min(3, 'must be 3 to 63 characters')
  .max(63, 'must be 3 to 63 characters')
  .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/, 'may hold lowercase letters, digits, dots and hyphens, and must start and end with a letter or digit')
  .refine((b) => !b.includes('..'), 'must not contain two adjacent dots')
  .refine((b) => !/^\d+\.\d+\.\d+\.\d+$/.test(b), 'must not look like an IP address');

/**
 * The request's S3 block as a whole, or else the operator's default (`egress.s3.*`) as a whole;
 * never a mix: filling a caller's blank fields from the default would send uploads signed with
 * the operator's key to an endpoint and bucket the caller chose. A bad bucket name is refused
 * here, not at upload time.
 */
export function s3From(upload: S3Upload | undefined, defaults: S3Defaults): S3Settings | undefined {
  if (!upload && !defaults.bucket) return undefined;
  const settings: S3Settings = upload
    ? {
        bucket: upload.bucket,
        endpoint: upload.endpoint,
        region: upload.region || 'us-east-1',
        accessKey: upload.accessKey,
        secret: upload.secret,
        sessionToken: upload.sessionToken,
        forcePathStyle: upload.forcePathStyle,
      }
    : {
        bucket: defaults.bucket ?? '',
        endpoint: defaults.endpoint ?? '',
        region: defaults.region || 'us-east-1',
        accessKey: defaults.access_key ?? '',
        secret: defaults.secret ?? '',
        sessionToken: '',
        forcePathStyle: defaults.force_path_style,
      };
  if (!settings.bucket) throw invalidArgument('s3.bucket is required: a request\'s S3 block is used as it is, without the configured defaults', 's3.bucket');
  const parsed = bucketName.safeParse(settings.bucket);
  if (!parsed.success) throw invalidArgument(`s3.bucket '${settings.bucket.slice(0, 80)}' is not a valid bucket name: ${parsed.error.issues[0]!.message}`, 's3.bucket');
  if (settings.endpoint && !/^https?:\/\/[^/]+/.test(settings.endpoint)) throw invalidArgument(`s3.endpoint '${settings.endpoint.slice(0, 200)}' must be an http:// or https:// URL`, 's3.endpoint');
  if (Boolean(settings.accessKey) !== Boolean(settings.secret)) throw invalidArgument('s3.access_key and s3.secret go together', settings.accessKey ? 's3.secret' : 's3.access_key');
  return settings;
}

/** The storage oneof every LiveKit output carries (file, direct file, segments, images). */
export type StorageChoice = { case: 's3'; value: S3Upload } | { case: 'gcp' | 'azure' | 'aliOSS'; value: unknown } | { case: undefined; value?: undefined };

export function storageOf(output: StorageChoice, defaults: S3Defaults): S3Settings | undefined {
  if (output.case === undefined) return s3From(undefined, defaults);
  if (output.case === 's3') return s3From(output.value, defaults);
  throw new ApiError('unimplemented', `${output.case} storage is not supported; use s3 (or no storage for the local folder)`);
}

/** Template values known when the request arrives. */
export interface TemplateValues {
  roomName: string;
  roomId: string;
  /** The egress's own id: default names carry it, so two egresses never pick one name. */
  egressId?: string;
  identity?: string;
  trackId?: string;
  trackType?: string;
  trackSource?: string;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** {room_name}, {room_id}, {time} (local YYYY-MM-DDTHHMMSS), {utc} (YYYYMMDDHHMMSSmmm), {publisher_identity}, {track_*}, {egress_id}. */
export function renderFilepath(template: string, v: TemplateValues, now = new Date()): string {
  const time = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}T${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  const utc = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}${pad(now.getUTCMilliseconds(), 3)}`;
  const values: Record<string, string> = {
    room_name: v.roomName,
    room_id: v.roomId,
    egress_id: v.egressId ?? '',
    time,
    utc,
    publisher_identity: v.identity ?? '',
    track_id: v.trackId ?? '',
    track_type: v.trackType ?? '',
    track_source: v.trackSource ?? '',
  };
  return template.replace(/\{([a-z_]+)\}/g, (all, key: string) => values[key] ?? all);
}

/**
 * The folders and name of a relative path, `..` and dot-names refused, unsafe characters replaced;
 * may be empty. A name starting with `.` is refused: the worker's own folders are dot-folders
 * (`.staging/<egress>/…`), and an output there could write into another egress's pieces.
 */
export function relativeParts(p: string, field: string): string[] {
  const segments = p.replace(/\\/g, '/').split('/').filter((s) => s !== '' && s !== '.');
  if (segments.some((s) => s === '..')) throw invalidArgument(`${field} '${p.slice(0, 200)}' must not contain '..'`, field);
  const hidden = segments.find((s) => s.startsWith('.'));
  if (hidden) throw invalidArgument(`${field} '${p.slice(0, 200)}' must not have a folder or file name starting with '.' ('${hidden.slice(0, 64)}')`, field);
  return segments.map((s) => s.replace(/[^\w.@=+,-]/g, '_'));
}

/** A relative path under the output folder or bucket: no absolute paths, no `..`, safe characters. */
export function safeRelative(p: string, field = 'filepath'): string {
  const out = relativeParts(p, field).join('/');
  if (!out) throw invalidArgument(`${field} is empty after rendering`, field);
  if (out.length > 512) throw invalidArgument(`${field} is longer than 512 characters`, field);
  return out;
}

export function withExtension(p: string, ext: string): string {
  return p.toLowerCase().endsWith(ext) ? p : `${p}${ext}`;
}
