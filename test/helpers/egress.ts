// Egress test kit: an S3 server (s3rver on a random loopback port), RTMP sinks (`ffmpeg -listen 1`
// through the one launcher), in-process or child-process egress workers, and probes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { EgressStatus, type EgressClient, type EgressInfo } from 'livekit-server-sdk';
import S3rver from 's3rver';
import { loadConfig } from '../../src/config.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import { startEgressWorker } from '../../src/egress/worker/startWorker.ts';
import { spawnEgressWorker, type WorkerChild } from '../../src/egress/workerChild.ts';
import { launchFfmpeg, type FfmpegProcess } from '../../src/media/ffmpeg.ts';
import { s3Client } from '../../src/storage/s3.ts';
import { sleep } from '../../src/time.ts';
import type { S3Settings } from '../../src/storage/settings.ts';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET } from './gateway.ts';
import { scaled } from './deadline.ts';
import { freePort, waitFor, waitForBound } from './net.ts';

export const BUCKET = 'recordings';

export interface TestS3 {
  endpoint: string;
  port: number;
  settings: S3Settings;
  stop(): Promise<void>;
  start(): Promise<void>;
  get(key: string): Promise<Buffer>;
  /** Keys and sizes of the objects under `prefix`, sorted by key. */
  list(prefix: string): Promise<{ key: string; size: number }[]>;
}

export async function startS3(): Promise<TestS3> {
  const port = await freePort();
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-s3-'));
  let server: S3rver | undefined;
  const endpoint = `http://127.0.0.1:${port}`;
  const settings: S3Settings = { accessKey: 'S3RVER', secret: 'S3RVER', sessionToken: '', region: 'us-east-1', endpoint, bucket: BUCKET, forcePathStyle: true };
  const s3: TestS3 = {
    endpoint,
    port,
    settings,
    async start() {
      server = new S3rver({ address: '127.0.0.1', port, silent: true, directory, configureBuckets: [{ name: BUCKET, configs: [] }] });
      await server.run();
    },
    async stop() {
      await server?.close();
      server = undefined;
    },
    async get(key) {
      // s3rver overwrites an object in place (data file truncated and rewritten, metadata JSON
      // written after), so a GET racing the worker's PUT of the same playlist can answer
      // InternalError, a body cut short, or a torn one. Real S3 PUTs are atomic; a reader of
      // s3rver retries until the body matches its ETag. A missing key or a fault that persists
      // still fails the test.
      const client = s3Client(settings);
      try {
        let fault: unknown;
        // Until the next rewrite of a torn object at the latest: a segment's time (2 s in these
        // tests), stretched by the load factor (one second was not enough beside other tests).
        const until = Date.now() + scaled(4000);
        for (let attempt = 1; attempt === 1 || Date.now() < until; attempt++) {
          if (attempt > 1) await sleep(50);
          try {
            // A body cut short can also leave the connection open: bound each try.
            const res = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }), { abortSignal: AbortSignal.timeout(scaled(5000)) });
            const body = Buffer.from(await res.Body!.transformToByteArray());
            const etag = (res.ETag ?? '').replace(/"/g, '');
            if (etag.includes('-') || crypto.createHash('md5').update(body).digest('hex') === etag) return body;
            fault = new Error(`S3 object ${key}: the body does not match its ETag ${etag}`);
          } catch (err) {
            if ((err as { name?: string }).name === 'NoSuchKey') throw err;
            fault = err;
          }
        }
        throw fault;
      } finally {
        client.destroy();
      }
    },
    async list(prefix) {
      const client = s3Client(settings);
      try {
        const out: { key: string; size: number }[] = [];
        let token: string | undefined;
        do {
          const res = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }));
          for (const o of res.Contents ?? []) out.push({ key: o.Key!, size: Number(o.Size ?? 0) });
          token = res.IsTruncated ? res.NextContinuationToken : undefined;
        } while (token);
        return out.sort((a, b) => a.key.localeCompare(b.key));
      } finally {
        client.destroy();
      }
    },
  };
  await s3.start();
  return s3;
}

/** Env for a worker of `gw` (its Redis, its API, its key). */
export function workerEnv(gw: Gateway, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ROOMGATE_REDIS_URL: gw.redisUrl,
    ROOMGATE_EGRESS_GATEWAY_URL: gw.url,
    ROOMGATE_API_KEY: API_KEY,
    ROOMGATE_API_SECRET: API_SECRET,
    ROOMGATE_RTMP_ENABLED: 'false',
    ROOMGATE_DATA_DIR: gw.config.data_dir,
    ROOMGATE_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    // Periodic progress webhooks would interleave with the status sequences tests assert; the
    // progress test turns them on.
    ROOMGATE_EGRESS_PROGRESS_INTERVAL: '0',
    ...extra,
  };
}

export function inProcessWorker(gw: Gateway, extra: Record<string, string> = {}): Promise<EgressWorker> {
  const config = loadConfig({ env: { ...workerEnv(gw, extra), ROOMGATE_PORT: String(gw.port) } });
  return startEgressWorker(config);
}

export function childWorker(gw: Gateway, extra: Record<string, string> = {}): WorkerChild {
  const env = workerEnv(gw, extra);
  // The child must not pick up the test runner's own ROOMGATE_* settings.
  for (const k of Object.keys(process.env)) if (k.startsWith('ROOMGATE_') && !(k in env)) env[k] = '';
  return spawnEgressWorker(env, { inherit: false });
}

export interface RtmpSink {
  url: string;
  file: string;
  ffmpeg: FfmpegProcess;
  /** Bytes written to the file so far. */
  size(): number;
  stop(): Promise<void>;
}

/** A one-shot RTMP server (`ffmpeg -listen 1`) that stores what it receives as FLV (-c copy). */
export async function startRtmpSink(name = 'sink'): Promise<RtmpSink> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-rtmp-sink-'));
  const file = path.join(dir, `${name}.flv`);
  const url = `rtmp://127.0.0.1:${port}/live/${name}-secretkey`;
  const ffmpeg = launchFfmpeg(['-listen', '1', '-timeout', '60', '-f', 'flv', '-i', url, '-c', 'copy', '-f', 'flv', '-y', file]);
  // Ready once FFmpeg listens; a TCP probe would use up the one connection `-listen 1` serves.
  await waitForBound(port, 'tcp', ffmpeg);
  return {
    url,
    file,
    ffmpeg,
    size: () => (fs.existsSync(file) ? fs.statSync(file).size : 0),
    stop: () => ffmpeg.stop(3000),
  };
}

/** ListEgress by id, and a wait for a status, through the client a test file sets up in beforeAll. */
export function egressLookups(client: () => EgressClient) {
  const info = async (id: string): Promise<EgressInfo> => (await client().listEgress({ egressId: id }))[0]!;
  const status = (id: string, want: EgressStatus, ms = 30_000) =>
    waitFor(async () => {
      const i = await info(id);
      return i?.status === want ? i : undefined;
    }, ms, `${id} ${EgressStatus[want]}`);
  return { info, status };
}
