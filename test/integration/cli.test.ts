// The two-command promise: `npm start` (bin/roomgate.mjs start) with nothing configured runs on
// loopback with the dev key and a local redis-server child, and stops both on SIGTERM.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RoomServiceClient, TokenVerifier } from 'livekit-server-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.ts';
import { NodeParticipant } from '../../src/client/node.ts';
import { freePort, isAlive, waitFor } from '../helpers/net.ts';

const BIN = path.resolve('bin/roomgate.mjs');
const children: ChildProcess[] = [];

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/** The environment without any ROOMGATE_* of the caller's. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ROOMGATE_')));
  return { ...env, ...extra };
}

function run(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [BIN, ...args], { env: cleanEnv(env), encoding: 'utf8', timeout: 30_000 });
}

describe('roomgate CLI', () => {
  it('starts on embedded defaults and stops cleanly on SIGTERM', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-cli-'));
    const port = await freePort();
    const redisPort = await freePort();
    const rtmpPort = await freePort();
    const child = spawn(process.execPath, [BIN, 'start'], {
      env: cleanEnv({
        ROOMGATE_PORT: String(port),
        ROOMGATE_RTMP_PORT: String(rtmpPort),
        ROOMGATE_REDIS_EMBEDDED_PORT: String(redisPort),
        ROOMGATE_DATA_DIR: dataDir,
        ROOMGATE_RTC_WORKERS: '1',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    await waitFor(() => (stdout.includes('roomgate listening') ? true : undefined), 30_000, 'gateway start');
    expect(stderr).toMatch(/DEVELOPMENT API key 'devkey' \/ 'secret'/);
    const redisLine = stdout.split('\n').find((l) => l.includes('started local redis-server'))!;
    const redisPid = JSON.parse(redisLine).pid as number;
    expect(isAlive(redisPid)).toBe(true);
    expect(fs.existsSync(path.join(dataDir, 'redis', 'appendonlydir'))).toBe(true);
    expect(stdout).toMatch(new RegExp(`"port":${rtmpPort}.*RTMP ingest listening`));

    const client = new RoomServiceClient(`http://127.0.0.1:${port}`, 'devkey', 'secret');
    await client.createRoom({ name: 'quickstart' });
    expect((await client.listRooms()).map((r) => r.name)).toEqual(['quickstart']);

    // A connected participant must not hold shutdown open, and is told why it ends.
    const token = await mintToken('devkey', 'secret', { identity: 'stayer', video: { roomJoin: true, room: 'quickstart' } });
    const stayer = await NodeParticipant.connect(`http://127.0.0.1:${port}`, token);
    const told = new Promise<string>((resolve) => stayer.on('disconnected', resolve));

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await told).toBe('SERVER_SHUTDOWN');
    expect(isAlive(redisPid)).toBe(false);
    expect(stdout).toMatch(/local redis-server stopped/);
  });

  it.each([
    [{ ROOMGATE_PORT: 'eighty' }, /ROOMGATE_PORT: expected an integer, got 'eighty'/],
    [{ ROOMGATE_BIND: '0.0.0.0' }, /refusing to listen on non-loopback address '0.0.0.0' with the built-in dev API key/],
    [{ ROOMGATE_WEBHOOK_URLS: 'not a url' }, /ROOMGATE_WEBHOOK_URLS: must be an http:\/\/ or https:\/\/ URL/],
  ])('refuses to start with %o and says why', (env, message) => {
    const res = run(['start'], env);
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(message);
    expect(res.stderr).not.toMatch(/\n\s+at /); // no stack trace for a user error
  });

  it('says what to do when the embedded Redis port is taken', async () => {
    const blocker = (await import('node:net')).createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const res = run(['start'], {
        ROOMGATE_PORT: String(await freePort()),
        ROOMGATE_REDIS_EMBEDDED_PORT: String(taken),
        ROOMGATE_RTMP_ENABLED: 'false',
        ROOMGATE_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-cli-')),
        ROOMGATE_RTC_WORKERS: '1',
      });
      expect(res.status).toBe(2);
      expect(res.stderr).toMatch(/set ROOMGATE_REDIS_EMBEDDED_PORT to a free port or ROOMGATE_REDIS_URL/);
    } finally {
      blocker.close();
    }
  });

  it('mints join tokens like lk token create', async () => {
    const res = run(['token', '--room', 'r1', '--identity', 'alice', '--name', 'Alice', '--sources', 'camera,microphone', '--ttl', '1h'], {});
    expect(res.status).toBe(0);
    const claims = await new TokenVerifier('devkey', 'secret').verify(res.stdout.trim());
    expect(claims).toMatchObject({
      sub: 'alice',
      name: 'Alice',
      video: { roomJoin: true, room: 'r1', canPublish: true, canSubscribe: true, canPublishData: true, canPublishSources: ['camera', 'microphone'] },
    });
    expect(claims.exp! - claims.nbf!).toBe(3600);

    const keyed = run(['token', '--create', '--list', '--api-key', 'k', '--api-secret', 's3cr3t'], {});
    expect((await new TokenVerifier('k', 's3cr3t').verify(keyed.stdout.trim())).video).toEqual({ roomCreate: true, roomList: true });

    const bad = run(['token', '--room', 'r1'], {});
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/a join token needs --room and --identity/);
    expect(run(['token', '--bogus'], {}).stderr).toMatch(/Unknown option '--bogus'/);
  });
});
