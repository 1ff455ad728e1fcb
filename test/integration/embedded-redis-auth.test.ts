// The embedded Redis of `npm start` asks for a password (issue 19, finding 8): random per data
// dir, kept in a file only its owner can read, the same after a restart.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { moduleLogger } from '../../src/logger.ts';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/store/embeddedRedis.ts';
import { freePort } from '../helpers/net.ts';

const running: EmbeddedRedis[] = [];

afterAll(async () => {
  for (const r of running) await r.stop();
});

async function ping(url: string): Promise<string> {
  const client = new Redis(url, { lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await client.ping();
  } catch (err) {
    return (err as Error).message;
  } finally {
    client.disconnect();
  }
}

describe('embedded Redis', () => {
  it('refuses clients without the data dir password, kept 0600 and reused after a restart', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-redis-auth-'));
    const port = await freePort();
    const first = await startEmbeddedRedis({ dataDir, port, log: moduleLogger('redis') });
    running.push(first);
    const file = path.join(dataDir, 'redis', 'password');
    const password = fs.readFileSync(file, 'utf8').trim();
    expect(password).toMatch(/^[0-9a-f]{64}$/);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(first.url).toBe(`redis://:${password}@127.0.0.1:${port}`);
    expect(await ping(`redis://127.0.0.1:${port}`)).toMatch(/NOAUTH/);
    expect(await ping(first.url)).toBe('PONG');
    // Not on the command line, which every local user can read.
    expect(fs.readFileSync(`/proc/${first.pid}/cmdline`, 'utf8')).not.toContain(password);

    await first.stop();
    const second = await startEmbeddedRedis({ dataDir, port, log: moduleLogger('redis') });
    running.push(second);
    expect(second.url).toBe(first.url);
    expect(await ping(second.url)).toBe('PONG');
  });
});
