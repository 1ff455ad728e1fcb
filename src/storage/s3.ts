// S3 uploads (AWS SDK v3, multipart through lib-storage). Works with AWS, MinIO and s3rver:
// path-style addressing when asked, and checksums only when required — with the SDK's default
// flexible checksums a streamed body goes out aws-chunked, which S3-compatible servers such as
// s3rver store verbatim (a corrupted object that still answers 200).
import fs from 'node:fs';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { S3Settings } from './settings.ts';
import { MAX_NAME_SUFFIX, withNumberSuffix } from './names.ts';

export function s3Client(s3: S3Settings): S3Client {
  return new S3Client({
    region: s3.region || 'us-east-1',
    ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
    forcePathStyle: s3.forcePathStyle || Boolean(s3.endpoint),
    ...(s3.accessKey && s3.secret
      ? { credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secret, ...(s3.sessionToken ? { sessionToken: s3.sessionToken } : {}) } }
      : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // Our own retry loop (with a local backup) decides about retries.
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 5000, requestTimeout: 120_000 },
  });
}

/** Where an object is, as FileInfo.location shows it. */
export function s3Location(s3: S3Settings, key: string): string {
  if (s3.endpoint) return `${s3.endpoint.replace(/\/+$/, '')}/${s3.bucket}/${key}`;
  return `https://${s3.bucket}.s3.${s3.region || 'us-east-1'}.amazonaws.com/${key}`;
}

export async function uploadFile(s3: S3Settings, key: string, file: string, contentType: string, opts: { ifNoneMatch?: boolean } = {}): Promise<string> {
  const client = s3Client(s3);
  try {
    const upload = new Upload({
      client,
      params: { Bucket: s3.bucket, Key: key, Body: fs.createReadStream(file), ContentType: contentType, ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}) },
      partSize: 8 * 1024 * 1024,
      queueSize: 2,
      leavePartsOnError: false,
    });
    await upload.done();
    return s3Location(s3, key);
  } finally {
    client.destroy();
  }
}

/** A small object from memory (a playlist) in one PUT. */
export async function uploadBody(s3: S3Settings, key: string, body: Buffer, contentType: string, cacheControl?: string): Promise<string> {
  const client = s3Client(s3);
  try {
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body, ContentType: contentType, ...(cacheControl ? { CacheControl: cacheControl } : {}) }));
    return s3Location(s3, key);
  } finally {
    client.destroy();
  }
}

const statusOf = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/** Whether an object is at `key`: true, false, or undefined when S3 will not say (403 without ListBucket). */
async function objectExists(s3: S3Settings, key: string): Promise<boolean | undefined> {
  const client = s3Client(s3);
  try {
    await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
    return true;
  } catch (err) {
    const status = statusOf(err);
    if (status === 404) return false;
    if (status === 403) return undefined;
    throw err;
  } finally {
    client.destroy();
  }
}

/**
 * A recording is never written over an object that is there already (another egress's, or
 * anyone's): `key`, else `key` numbered (`name-1.mp4`, `name-2.mp4`, …). The check is a HEAD,
 * and the PUT is conditional (If-None-Match: *) where the server supports it, so two uploads
 * racing for one name do not both win on S3 itself. Returns the key used.
 */
export async function uploadFileAsNew(s3: S3Settings, key: string, file: string, contentType: string): Promise<{ key: string; location: string }> {
  for (let n = 0; n <= MAX_NAME_SUFFIX; n++) {
    const candidate = withNumberSuffix(key, n);
    if (await objectExists(s3, candidate)) continue;
    try {
      return { key: candidate, location: await uploadFile(s3, candidate, file, contentType, { ifNoneMatch: true }) };
    } catch (err) {
      const status = statusOf(err);
      if (status === 412 || status === 409) continue; // taken meanwhile
      throw err;
    }
  }
  throw new Error(`s3://${s3.bucket}/${key} and ${MAX_NAME_SUFFIX} numbered names after it are all taken`);
}
