// Headless Chromium as a real WHIP client (fake camera + microphone, RTCPeerConnection + fetch to
// /w with the stream key as Bearer), and a second page playing it back over WHEP on /play: frames
// decode in its <video>.
import { IngressState_Status } from '@livekit/protocol';
import { IngressClient, IngressInput } from 'livekit-server-sdk';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../helpers/chromium.ts';
import { publishFromPage } from '../helpers/publisherCorpus.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { scaled } from '../helpers/deadline.ts';
import { waitFor } from '../helpers/net.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';


let redis: TestRedis;
let gw: Gateway;
let browser: Browser;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
});

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await redis?.stop();
});

describe('WHIP and WHEP in headless Chromium', () => {
  it('a page publishes its camera and microphone over WHIP; the /play page shows the video over WHEP', async () => {
    const client = new IngressClient(gw.url, API_KEY, API_SECRET);
    const info = await client.createIngress(IngressInput.WHIP_INPUT, { name: 'browser', roomName: 'browser-whip', participantIdentity: 'chromium' });

    const publisher = await (await browser.newContext()).newPage();
    publisher.on('pageerror', (err) => console.error('[publisher] page error:', err.message));
    await publisher.goto(`${gw.url}/play`); // any page of the gateway's origin
    const pub = await publishFromPage(publisher, info.url, info.streamKey);
    expect(pub.status, pub.detail).toBe(201);
    expect(pub.location).toMatch(/^\/w\/session\//);
    await publisher.waitForFunction(() => (window as unknown as { whipPc: RTCPeerConnection }).whipPc.connectionState === 'connected', undefined, { timeout: 20_000 });
    await waitFor(async () => {
      const [i] = await client.listIngress({ ingressId: info.ingressId });
      return i?.state?.status === IngressState_Status.ENDPOINT_PUBLISHING ? true : undefined;
    }, 15_000, 'PUBLISHING');

    const viewer = await (await browser.newContext()).newPage();
    viewer.on('pageerror', (err) => console.error('[viewer] page error:', err.message));
    const token = await joinToken('browser-whip', 'web-viewer', { canSubscribe: true, canPublish: false });
    await viewer.goto(`${gw.url}/play?room=browser-whip&identity=chromium&token=${token}`);
    await viewer.waitForFunction(
      () => {
        const v = document.querySelector('video')!;
        return v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 30;
      },
      undefined,
      { timeout: 30_000 },
    ).catch(async (err: unknown) => {
      throw new Error(`no frames at the WHEP viewer (status: ${await viewer.evaluate(() => (window as unknown as { whepStatus?: string }).whepStatus)}): ${String(err)}`);
    });
    const size = await viewer.evaluate(() => [document.querySelector('video')!.videoWidth, document.querySelector('video')!.videoHeight]);
    expect(size).toEqual([640, 360]);

    // DELETE from the publishing page ends the ingress.
    const del = await publisher.evaluate(async (loc) => (await fetch(loc!, { method: 'DELETE' })).status, pub.location);
    expect(del).toBe(200);
    await waitFor(async () => {
      const [i] = await client.listIngress({ ingressId: info.ingressId });
      return i?.state?.status === IngressState_Status.ENDPOINT_INACTIVE ? true : undefined;
    }, 15_000, 'INACTIVE');
    // The viewer's WHEP session closes with the tracks.
    await viewer
      .waitForFunction(() => /disconnected|failed|closed/.test((window as unknown as { whepStatus?: string }).whepStatus ?? ''), undefined, { timeout: scaled(40_000) })
      .catch(async (err: unknown) => {
        throw new Error(`the WHEP viewer's session did not close with the tracks (status: ${await viewer.evaluate(() => (window as unknown as { whepStatus?: string }).whepStatus)}): ${String(err)}`);
      });
  });
});
