// A room's webhook queue behind a slow endpoint is bounded (issue 19, finding 8): the oldest
// waiting events are dropped, counted as `overflow`, and the newest still arrive in order.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { moduleLogger } from '../../src/logger.ts';
import { createMetrics } from '../../src/metrics.ts';
import { WebhookNotifier } from '../../src/webhooks/WebhookNotifier.ts';
import { waitFor } from '../helpers/net.ts';

const received: string[] = [];
let release: (() => void) | undefined;
const held = new Promise<void>((r) => (release = r));
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    received.push((JSON.parse(body) as { participant?: { identity?: string } }).participant?.identity ?? '?');
    // The endpoint hangs until the test lets it answer.
    held.then(() => res.writeHead(200).end()).catch((err: unknown) => console.error('answering the held webhook failed', err));
  });
});

afterAll(async () => {
  release?.();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('webhook queue bound', () => {
  it('drops the oldest waiting events of a room past the bound, and delivers the rest in order', async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const metrics = createMetrics({ activeRooms: () => 0 });
    const notifier = new WebhookNotifier({
      urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`],
      apiKey: 'k',
      apiSecret: 'a-secret-that-is-long-enough-for-hs256',
      log: moduleLogger('webhooks'),
      metrics,
      timeoutMs: 60_000,
      maxQueue: 50,
    });
    const room = { name: 'busy', sid: 'RM_x' };
    for (let i = 0; i < 300; i++) notifier.notify('participant_joined', { room, participant: { identity: `p${i}` } });
    // p0 is in flight, 50 wait, 249 were dropped.
    await waitFor(() => (received.length === 1 ? true : undefined), 10_000, 'first delivery attempt');
    expect(notifier.queued).toBe(50);
    const overflow = (await metrics.webhookDeliveries.get()).values.find((v) => v.labels.result === 'overflow');
    expect(overflow?.value).toBe(249);

    release!();
    await notifier.flush(30_000);
    expect(received).toEqual(['p0', ...Array.from({ length: 50 }, (_, i) => `p${250 + i}`)]);
    await notifier.close();
  });
});
