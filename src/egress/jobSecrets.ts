// Secrets in egress job data (stream URLs with their keys, S3 credentials) are sealed before they
// reach Redis: BullMQ keeps finished jobs for a day and failed ones for a week, and a Redis
// dump, replica or `MONITOR` would otherwise show them in plain text. AES-256-GCM with a key
// derived from the workers' credential (egress.worker_secret), which the gateway and every worker
// have; the rest of the job (room, source, names) stays readable for operators and the taps.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { JobSpec } from './contract.ts';
import type { S3Settings } from '../storage/settings.ts';

const PREFIX = 'enc:v1:';

export function jobDataKey(workerSecret: string): Buffer {
  return createHmac('sha256', workerSecret).update('roomgate egress job data v1').digest();
}

export function seal(value: string, key: Buffer): string {
  if (value === '' || value.startsWith(PREFIX)) return value;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
  return `${PREFIX}${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
}

/** Opens a sealed value; a value that was never sealed (a job queued before) is returned as it is. */
export function unseal(value: string, key: Buffer): string {
  if (!value.startsWith(PREFIX)) return value;
  const raw = Buffer.from(value.slice(PREFIX.length), 'base64url');
  if (raw.length < 28) throw new Error('sealed job data is truncated');
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  decipher.setAuthTag(raw.subarray(12, 28));
  try {
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    throw new Error('sealed job data does not open with this egress.worker_secret (gateway and worker must share it)');
  }
}

function s3With(s3: S3Settings | undefined, f: (v: string) => string): S3Settings | undefined {
  return s3 && { ...s3, accessKey: f(s3.accessKey), secret: f(s3.secret), sessionToken: f(s3.sessionToken) };
}

function mapSecrets(spec: JobSpec, f: (v: string) => string): JobSpec {
  const out: JobSpec = { ...spec };
  if (spec.stream) out.stream = { urls: spec.stream.urls.map(f) };
  if (spec.file) out.file = { ...spec.file, ...(spec.file.s3 ? { s3: s3With(spec.file.s3, f)! } : {}) };
  if (spec.segments) out.segments = { ...spec.segments, ...(spec.segments.s3 ? { s3: s3With(spec.segments.s3, f)! } : {}) };
  if (spec.images) out.images = spec.images.map((im) => ({ ...im, ...(im.s3 ? { s3: s3With(im.s3, f)! } : {}) }));
  return out;
}

/** The job data as stored: stream URLs and S3 credentials sealed. */
export function sealSpec(spec: JobSpec, key: Buffer): JobSpec {
  return mapSecrets(spec, (v) => seal(v, key));
}

/** The job data as a worker (or UpdateStream) uses it. */
export function unsealSpec(spec: JobSpec, key: Buffer): JobSpec {
  return mapSecrets(spec, (v) => unseal(v, key));
}
