// The API server keeps idle keep-alive sockets longer than HTTP clients do, so a client never sends
// a request on a socket the server is closing (ECONNRESET from the SDK under media load). Node's
// default closed them after 5 s, undici reuses them for 4 s: a stalled event loop on either side
// crossed the two.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HTTP_KEEP_ALIVE_MS } from '../../src/api/http.ts';
import type { Gateway } from '../../src/main.ts';
import { sleep } from '../../src/time.ts';
import { startTestGateway } from '../helpers/gateway.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

describe('HTTP keep-alive', () => {
  it('advertises a long keep-alive and keeps an idle socket open past the clients’ pool timeouts', async () => {
    const socket = net.connect(gw.port, '127.0.0.1');
    let received = '';
    let closed = false;
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    // A status line follows the previous body directly (no newline after JSON).
    const responses = () => received.match(/HTTP\/1\.1 \d{3} /g)?.length ?? 0;
    const request = async (n: number) => {
      socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
      const deadline = Date.now() + 10_000;
      while (responses() < n && !closed && Date.now() < deadline) await sleep(20);
    };
    try {
      await request(1);
      expect(received).toMatch(/^HTTP\/1\.1 200/);
      expect(received).toMatch(new RegExp(`^Keep-Alive: timeout=${HTTP_KEEP_ALIVE_MS / 1000}\\r$`, 'im'));
      // Past Node's old 5 s default and undici's 4 s: the server must not have closed the socket.
      await sleep(6000);
      expect(closed).toBe(false);
      await request(2);
      expect(responses()).toBe(2);
    } finally {
      socket.destroy();
    }
  });
});
