// Redis goes away under a running gateway: API calls fail fast with `unavailable`, health turns 503,
// the process stays up, and everything works again once Redis is back on the same port.
import { spawn } from 'node:child_process';
import { RoomServiceClient, TwirpError } from 'livekit-server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let gw: Gateway | undefined;
let redis: TestRedis | undefined;
const extra: number[] = [];

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
  for (const pid of extra) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

describe('Redis outage', () => {
  it('answers unavailable while Redis is down and recovers when it returns', async () => {
    redis = await startRedis();
    gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
    const client = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
    await client.createRoom({ name: 'before-outage' });

    await redis.stop();
    const err = await client.listRooms().then(
      () => undefined,
      (e: unknown) => e as TwirpError,
    );
    expect(err).toBeInstanceOf(TwirpError);
    expect(err).toMatchObject({ code: 'unavailable', status: 503 });
    const health = await fetch(`${gw.url}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'unavailable', redis: false });

    // Same port, fresh (empty) server: the gateway reconnects by itself.
    const again = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    extra.push(again.pid!);
    await waitFor(async () => ((await fetch(`${gw!.url}/healthz`)).status === 200 ? true : undefined), 15_000, 'health back');
    const room = await client.createRoom({ name: 'after-outage' });
    expect(room.name).toBe('after-outage');
  });
});
