// A backup folder on another file system (issue 19, finding 8): a recording whose upload failed
// is moved there by copy and unlink, since rename(2) answers EXDEV across file systems.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressStore } from '../../src/egress/EgressStore.ts';
import { moduleLogger } from '../../src/logger.ts';
import { Storage } from '../../src/storage/Storage.ts';
import { freePort } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let client: Redis;
const outputDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-exdev-out-'));
// tmpfs: a different file system from the temp folder's disk.
const backupDir = fs.mkdtempSync('/dev/shm/roomgate-exdev-backup-');

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
  fs.rmSync(backupDir, { recursive: true, force: true });
  fs.rmSync(outputDir, { recursive: true, force: true });
});

describe('backup folder on another file system', () => {
  it('keeps the recording there when S3 is unreachable', async () => {
    expect(fs.statSync(backupDir).dev, 'the test needs two file systems').not.toBe(fs.statSync(outputDir).dev);
    const storage = new Storage({
      outputDir,
      backupDir,
      pending: new EgressStore(client),
      onUploaded: async () => undefined,
      log: moduleLogger('storage'),
      attempts: 1,
      retryBaseMs: 600_000,
    });
    try {
      const s3 = { accessKey: 'a', secret: 'b', sessionToken: '', region: 'us-east-1', endpoint: `http://127.0.0.1:${await freePort()}`, bucket: 'x', forcePathStyle: true };
      const local = storage.localFile('EG_exdev', 'rec/take.mp4', s3).file;
      fs.writeFileSync(local, Buffer.alloc(64 * 1024, 7));
      const stored = await storage.store('EG_exdev', local, 'rec/take.mp4', s3);
      expect(stored).toMatchObject({ backup: true, size: 64 * 1024 });
      expect(stored.location.startsWith(backupDir)).toBe(true);
      expect(fs.readFileSync(stored.location).equals(Buffer.alloc(64 * 1024, 7))).toBe(true);
      expect(fs.existsSync(local)).toBe(false);
      expect(fs.readdirSync(path.dirname(stored.location))).toEqual(['take.mp4']); // no temp copy left
    } finally {
      storage.close();
    }
  });
});
