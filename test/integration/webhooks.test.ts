// Webhooks received by a local HTTP server and verified by the SDK's WebhookReceiver.
import { RoomServiceClient, WebhookReceiver } from 'livekit-server-sdk';
import { Room } from '@livekit/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { moduleLogger } from '../../src/logger.ts';
import type { Gateway } from '../../src/main.ts';
import { createMetrics } from '../../src/metrics.ts';
import { WebhookNotifier } from '../../src/webhooks/WebhookNotifier.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

const receiver = new WebhookReceiver(API_KEY, API_SECRET);
let redis: TestRedis;
let sink: WebhookSink;
let gw: Gateway;

beforeAll(async () => {
  redis = await startRedis();
  sink = await startWebhookSink();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_WEBHOOK_URLS: sink.url });
});

/** A notifier of its own with fast retries, against a sink of the test's. */
function fastNotifier(url: string): WebhookNotifier {
  return new WebhookNotifier({
    urls: [url],
    apiKey: API_KEY,
    apiSecret: API_SECRET,
    log: moduleLogger('test'),
    metrics: createMetrics({ activeRooms: () => 0 }),
    baseDelayMs: 20,
  });
}

afterAll(async () => {
  await gw?.close();
  await sink?.close();
  await redis?.stop();
});

describe('webhooks', () => {
  it('sends room_started and room_finished, signed and in order', async () => {
    const client = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
    const room = await client.createRoom({ name: 'hooked', metadata: 'md' });
    await client.deleteRoom('hooked');
    await waitFor(() => (sink.received.length >= 2 ? true : undefined), 10_000, 'two webhooks');
    const events = await Promise.all(sink.received.map((r) => receiver.receive(r.body, r.auth)));
    expect(events.map((e) => e.event)).toEqual(['room_started', 'room_finished']);
    for (const e of events) {
      expect(e.room).toMatchObject({ name: 'hooked', sid: room.sid, metadata: 'md' });
      expect(e.id).toMatch(/^EV_/);
      expect(Number(e.createdAt)).toBeGreaterThan(Date.now() / 1000 - 60);
    }
    expect(sink.received[0]!.contentType).toBe('application/webhook+json');
    // The raw Authorization header is a bare JWT, as LiveKit sends it.
    expect(sink.received[0]!.auth).not.toMatch(/^Bearer /);
    // A tampered body fails the SDK's sha256 check.
    await expect(receiver.receive(sink.received[0]!.body.replace('hooked', 'hacked'), sink.received[0]!.auth)).rejects.toThrow(/sha256/);
  });

  it('retries failed deliveries with backoff, keeping per-room order', async () => {
    const own = await startWebhookSink();
    // The first event of room 'ordered' fails twice (503, then 500) before it is accepted.
    let failures = 0;
    own.statusFor = (_n, body) =>
      body.includes('"ordered"') && body.includes('room_started') && failures < 2 ? [503, 500][failures++] : undefined;
    const notifier = fastNotifier(own.url);
    try {
      const room = new Room({ name: 'ordered', sid: 'RM_x' });
      notifier.notify('room_started', { room });
      notifier.notify('room_finished', { room });
      // Another room's events are not held up by the first room's retries.
      notifier.notify('room_started', { room: new Room({ name: 'other', sid: 'RM_y' }) });
      await notifier.flush(10_000);
      const events = await Promise.all(own.received.map((r) => receiver.receive(r.body, r.auth)));
      const ordered = events.filter((e) => e.room?.name === 'ordered').map((e) => e.event);
      expect(ordered).toEqual(['room_started', 'room_finished']);
      expect(failures).toBe(2);
      expect(events.findIndex((e) => e.room?.name === 'other')).toBe(0);
    } finally {
      await notifier.close();
      await own.close();
    }
  });

  it('drops an event a receiver rejects with 4xx, without retrying', async () => {
    const own = await startWebhookSink();
    let attempts = 0;
    own.statusFor = () => {
      attempts++;
      return 401;
    };
    const notifier = fastNotifier(own.url);
    notifier.notify('room_started', { room: new Room({ name: 'r' }) });
    await notifier.flush(5000);
    expect(attempts).toBe(1);
    await notifier.close();
    await own.close();
  });
});
