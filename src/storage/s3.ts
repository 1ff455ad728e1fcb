// S3 uploads (AWS SDK v3, multipart through lib-storage). Works with AWS, MinIO and s3rver:
// path-style addressing when asked, and checksums only when required — with the SDK's default
// flexible checksums a streamed body goes out aws-chunked, which S3-compatible servers such as
// s3rver store verbatim (a corrupted object that still answers 200).
import fs from 'node:fs';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { S3Settings } from '../egress/EgressTypes.ts';

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

export async function uploadFile(s3: S3Settings, key: string, file: string, contentType: string): Promise<string> {
  const client = s3Client(s3);
  try {
    const upload = new Upload({
      client,
      params: { Bucket: s3.bucket, Key: key, Body: fs.createReadStream(file), ContentType: contentType },
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
