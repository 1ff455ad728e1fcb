// Two headless Chromium pages (Debian's chromium, fake camera and microphone) join the demo page's
// room through the browser SDK: each decodes the other's video and receives its audio, chat
// round-trips over data channels, and a leave is seen by the other side.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TrackSource } from 'livekit-server-sdk';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../helpers/chromium.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';


let redis: TestRedis;
let gw: Gateway;
let browser: Browser;

interface Stat {
  identity: string;
  kind: string;
  packetsReceived: number;
  framesDecoded: number;
  width?: number;
}

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  // The fake microphone plays a steady tone (Chromium loops the file): its own beep is near silence
  // (-114 dBov measured) and would never make anyone an active speaker.
  const tone = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-e2e-')), 'tone.wav');
  const ff = launchFfmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '5', '-ac', '1', '-y', tone]);
  expect(await ff.exited).toBe(0);
  browser = await launchChromium([`--use-file-for-fake-audio-capture=${tone}`]);
});

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await redis?.stop();
});

async function openDemo(identity: string): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[${identity}] page error:`, err.message));
  const token = await joinToken('e2e-room', identity);
  // Raw microphone: noise suppression would treat a steady tone as noise.
  await page.goto(`${gw.url}/?room=e2e-room&identity=${identity}&autojoin=1&processing=off&token=${token}`);
  await page.waitForFunction(() => (window as unknown as { demo: { events: { name: string }[] } }).demo.events.some((e) => e.name === 'joined' || e.name === 'error'));
  const error = await page.evaluate(() => (window as unknown as { demo: { events: { name: string; data: unknown }[] } }).demo.events.find((e) => e.name === 'error'));
  expect(error).toBeUndefined();
  return page;
}

const stats = (page: Page) => page.evaluate(() => (window as unknown as { demo: { mediaStats(): Promise<Stat[]> } }).demo.mediaStats());

describe('browser SDK in headless Chromium', () => {
  it('two pages see and hear each other, chat, and see a leave', async () => {
    const alice = await openDemo('alice');
    const bob = await openDemo('bob');

    for (const [page, other] of [[alice, 'bob'], [bob, 'alice']] as const) {
      const first = await waitFor(
        async () => {
          const s = await stats(page);
          const v = s.find((x) => x.identity === other && x.kind === 'video');
          const a = s.find((x) => x.identity === other && x.kind === 'audio');
          return v && a && v.framesDecoded > 0 && (v.width ?? 0) > 0 && a.packetsReceived > 0 ? { v, a } : undefined;
        },
        30_000,
        `decoded media from ${other}`,
      );
      await new Promise((r) => setTimeout(r, 1000));
      const later = await stats(page);
      const v2 = later.find((x) => x.identity === other && x.kind === 'video')!;
      const a2 = later.find((x) => x.identity === other && x.kind === 'audio')!;
      expect(v2.framesDecoded).toBeGreaterThan(first.v.framesDecoded);
      expect(a2.packetsReceived).toBeGreaterThan(first.a.packetsReceived);
      expect(first.v.width).toBeGreaterThan(0);
    }

    // Both microphones play the tone: bob sees alice among the active speakers.
    // (Levels come from the ssrc-audio-level RTP header extension that browsers send.)
    await bob.waitForFunction(
      () =>
        (window as unknown as { demo: { events: { name: string; data: unknown }[] } }).demo.events.some(
          (e) => e.name === 'activeSpeakersChanged' && (e.data as string[]).includes('alice'),
        ),
      undefined,
      { timeout: 15_000 },
    );

    // Chat typed into alice's page arrives at bob's over the data channel.
    await bob.evaluate(() => (window as unknown as { demo: { room: { dataReady: Promise<void> } } }).demo.room.dataReady);
    await alice.fill('#message', 'hello from alice');
    await alice.click('#chat button');
    await bob.waitForFunction(() =>
      (window as unknown as { demo: { chat: { from: string; text: string }[] } }).demo.chat.some((m) => m.from === 'alice' && m.text === 'hello from alice'),
    );

    // Simulcast: the camera published 3 layers.
    const listed = await gw.rooms.listParticipants('e2e-room');
    const aliceVideo = listed.find((p) => p.identity === 'alice')!.tracks.find((t) => t.source === TrackSource.CAMERA);
    expect(aliceVideo?.simulcast).toBe(true);

    // Simulcast layer selection: bob asks for the lowest layer and gets a quarter-size picture.
    await bob.evaluate(async () => {
      const room = (window as unknown as { demo: { room: { remoteTracks: { kind: string; trackSid: string }[]; setPreferredLayer(sid: string, layer: number): Promise<void> } } }).demo.room;
      const video = room.remoteTracks.find((t) => t.kind === 'video')!;
      await room.setPreferredLayer(video.trackSid, 0);
    });
    const small = await waitFor(
      async () => {
        const v = (await stats(bob)).find((x) => x.identity === 'alice' && x.kind === 'video');
        return v && (v.width ?? 0) > 0 && (v.width ?? 0) <= 400 ? v : undefined;
      },
      20_000,
      'lowest simulcast layer at bob',
    );
    expect(small.width).toBe(320);

    await alice.click('#leave');
    await bob.waitForFunction(() =>
      (window as unknown as { demo: { events: { name: string; data: unknown }[] } }).demo.events.some(
        (e) => e.name === 'participantDisconnected' && e.data === 'alice',
      ),
    );
  });
});
