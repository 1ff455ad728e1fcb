// Stock livekit-client 2.23.0 in headless Chromium when its receive side is on an overflow router
// (issue 16, part 1): two workers and a consumer budget of 1, so both LiveKit clients receive on
// the second worker through pipeToRouter. They decode each other's simulcast video and audio, a
// request for the lowest layer crosses the pipe, and chat reaches the other side (LiveKit's DCEP
// data source is opened on the receiver's router). When that worker dies they are disconnected
// with MEDIA_FAILURE and the room goes on.
import { DataPacket_Kind, DisconnectReason } from '@livekit/protocol';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { expectMediaFrom, lkChat, lkStats, openLk, type Lk } from '../helpers/livekitPage.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let browser: Browser;
const nodes: NodeParticipant[] = [];
const ROOM = 'lk-spread';

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_RTC_WORKERS: '2', ROOMGATE_RTC_CONSUMERS_PER_WORKER: '1' });
  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.leave().catch(() => undefined)));
  await browser?.close();
  await gw?.close();
  await redis?.stop();
});

describe('stock livekit-client receiving on an overflow router', () => {
  it('decodes, switches simulcast layers and gets chat across the pipe', async () => {
    // A Node publisher and one Node subscriber fill the room worker's budget of one consumer.
    const pub = await join(gw.url, ROOM, 'pub');
    nodes.push(pub);
    await pub.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const filler = await join(gw.url, ROOM, 'filler');
    nodes.push(filler);
    await waitFor(() => filler.remoteTracks.length > 0 || undefined, 15_000, 'filler subscribed');

    const alice = await openLk(browser, gw.url, ROOM, 'alice');
    const bob = await openLk(browser, gw.url, ROOM, 'bob');
    const room = gw.rooms.liveRoom(ROOM)!;
    const home = room.workerPidForTesting;
    const placed = room.receiverWorkersForTesting();
    expect(placed.get('filler')).toBe(home);
    expect(placed.get('alice')).not.toBe(home);
    expect(placed.get('bob')).not.toBe(home);
    expect(gw.mediaWorkerPids).toContain(placed.get('bob'));

    await expectMediaFrom(alice, 'bob');
    await expectMediaFrom(bob, 'alice');

    // bob asks for alice's lowest simulcast layer: the preferred layer holds on the piped producer.
    const cam = (await gw.rooms.listParticipants(ROOM)).find((p) => p.identity === 'alice')!.tracks.find((t) => t.type === 1)!;
    expect(cam.simulcast).toBe(true);
    type Pub = { setVideoQuality(q: number): void };
    type LkRooms = { lk: { room: { getParticipantByIdentity(i: string): { getTrackPublication(s: string): Pub } } } };
    await bob.evaluate(() => (window as unknown as LkRooms).lk.room.getParticipantByIdentity('alice').getTrackPublication('camera').setVideoQuality(0));
    const small = await waitFor(
      async () => {
        const v = (await lkStats(bob)).find((x) => x.identity === 'alice' && x.kind === 'video');
        return v && v.width > 0 && v.width <= 400 ? v : undefined;
      },
      30_000,
      'lowest simulcast layer at bob',
    );
    expect(small.width).toBeLessThanOrEqual(cam.layers.map((l) => l.width).sort((a, b) => a - b)[0]!);

    // Chat from alice reaches bob through the data source on bob's (overflow) router.
    await alice.evaluate(() => (window as unknown as { lk: Lk }).lk.sendChat('across workers', { topic: 'greetings' }));
    await waitFor(async () => (await lkChat(bob)).find((m) => m.text === 'across workers'), 15_000, 'reliable data at bob');
    expect((await lkChat(bob)).find((m) => m.text === 'across workers')).toMatchObject({ from: 'alice', topic: 'greetings', kind: DataPacket_Kind.RELIABLE });

    // Their worker dies: both clients are disconnected with MEDIA_FAILURE (their app rejoins); the
    // Node participants on the room's worker and the room stay as they were.
    const sids = new Map((await gw.rooms.listParticipants(ROOM)).map((p) => [p.identity, p.sid]));
    process.kill(placed.get('bob')!, 'SIGKILL');
    for (const page of [alice, bob]) {
      const reason = await page
        .waitForFunction(() => (window as unknown as { lk: Lk }).lk.events.find((e) => e.name === 'disconnected')?.data, undefined, { timeout: 30_000 })
        .then((h) => h.jsonValue());
      expect(reason).toBe(DisconnectReason.MEDIA_FAILURE);
    }
    const after = new Map((await gw.rooms.listParticipants(ROOM)).map((p) => [p.identity, p.sid]));
    expect([...after.keys()].sort()).toEqual(['filler', 'pub']);
    expect(after.get('pub')).toBe(sids.get('pub'));
    expect(gw.rooms.liveRoom(ROOM)).toBe(room);
    await alice.close();
    await bob.close();
  }, 120_000);
});
