// Rooms live in Redis: a gateway restarted on the same Redis lists the same rooms.
import { RoomServiceClient, WebhookReceiver } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let sink: WebhookSink;

beforeAll(async () => {
  redis = await startRedis();
  sink = await startWebhookSink();
});

afterAll(async () => {
  await sink?.close();
  await redis?.stop();
});

describe('room registry', () => {
  it('keeps rooms across a gateway restart', async () => {
    const env = { ROOMGATE_REDIS_URL: redis.url, ROOMGATE_NODE_ID: 'ND_restart' };
    const first = await startTestGateway(env);
    const c1 = new RoomServiceClient(first.url, API_KEY, API_SECRET);
    const a = await c1.createRoom({ name: 'persist-a', metadata: 'one' });
    const b = await c1.createRoom({ name: 'persist-b', maxParticipants: 4 });
    await first.close();

    const second = await startTestGateway(env);
    try {
      expect(second.rooms.activeRooms).toBe(2);
      const c2 = new RoomServiceClient(second.url, API_KEY, API_SECRET);
      const rooms = await c2.listRooms();
      expect(rooms.map((r) => [r.name, r.sid])).toEqual([
        ['persist-a', a.sid],
        ['persist-b', b.sid],
      ]);
      expect(rooms[0]!.metadata).toBe('one');
      expect(rooms[1]!.maxParticipants).toBe(4);
      expect(rooms[0]!.creationTime).toBe(a.creationTime);
      await c2.deleteRoom('persist-a');
      await c2.deleteRoom('persist-b');
    } finally {
      await second.close();
    }
  });

  it('closes a room nobody joined after its empty_timeout, with room_finished', async () => {
    const gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_WEBHOOK_URLS: sink.url, ROOMGATE_NODE_ID: 'ND_timeout' });
    try {
      const client = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
      await client.createRoom({ name: 'short-lived', emptyTimeout: 1 });
      await client.createRoom({ name: 'long-lived', emptyTimeout: 600 });
      const receiver = new WebhookReceiver(API_KEY, API_SECRET);
      const finished = await waitFor(
        async () => {
          for (const r of sink.received) {
            const e = await receiver.receive(r.body, r.auth);
            if (e.event === 'room_finished') return e;
          }
          return undefined;
        },
        10_000,
        'room_finished',
      );
      expect(finished.room?.name).toBe('short-lived');
      expect((await client.listRooms()).map((r) => r.name)).toEqual(['long-lived']);
      expect(gw.rooms.activeRooms).toBe(1);
      await client.deleteRoom('long-lived');
    } finally {
      await gw.close();
    }
  });
});
