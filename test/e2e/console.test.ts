// The operator's console in headless Chromium against a gateway started as users start it: sign in
// (a wrong secret refused), create an RTMP ingress, push FFmpeg to the key the page shows, watch its
// health and the ingress participant appear, preview it over WHEP, record the room from the page
// and watch the progress move, stop it and find the file. Then the bad input: an expired or forged
// session, a cross-site POST, and the stream key in the logs. Screenshots go to docs/screenshots/ with CONSOLE_SCREENSHOTS=1.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { RoomServiceClient, WebhookReceiver, EgressStatus } from 'livekit-server-sdk';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueSession } from '../../src/console/session.ts';
import { launchFfmpeg, type FfmpegProcess } from '../../src/media/ffmpeg.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { API_KEY, API_SECRET } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { spawnGateway, type SpawnedGateway } from '../helpers/spawnGateway.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

// The README's screenshots are refreshed only on request (CONSOLE_SCREENSHOTS=1): a plain test run
// must not rewrite tracked files.
const SHOTS = process.env.CONSOLE_SCREENSHOTS === '1' ? path.resolve('docs/screenshots') : fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-console-shots-'));
let gw: SpawnedGateway;
let hooks: WebhookSink;
let browser: Browser;
let page: Page;
let pusher: FfmpegProcess | undefined;
let streamKey = '';

beforeAll(async () => {
  hooks = await startWebhookSink();
  gw = await spawnGateway({ ROOMGATE_EGRESS_PROGRESS_INTERVAL: '1', ROOMGATE_WEBHOOK_URLS: hooks.url });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1180, height: 760 } });
}, 120_000);

afterAll(async () => {
  await pusher?.stop(2000);
  await browser?.close();
  await gw?.stop();
  await hooks?.close();
});

const screenshot = (name: string) => page.screenshot({ path: path.join(SHOTS, `console-${name}.png`) });

function probeSeconds(file: string): number {
  const r = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

describe('operator console', () => {
  it('signs in, ingests OBS-style RTMP, previews, records with live progress, stops and finds the file', async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.goto(`${gw.url}/console`);
    await page.waitForSelector('#login-form');

    // A wrong secret is refused by the server; nothing is signed in.
    await page.fill('#login-form [name=apiKey]', API_KEY);
    await page.fill('#login-form [name=apiSecret]', 'not-the-secret');
    await page.click('#login-form button');
    await page.waitForFunction(() => document.querySelector('#login-error')?.textContent?.includes('wrong secret'));
    expect(await page.isVisible('#nav')).toBe(false);

    await page.fill('#login-form [name=apiSecret]', API_SECRET);
    await page.click('#login-form button');
    await page.waitForSelector('#nav', { state: 'visible' });
    // The session is an HttpOnly cookie: the page's script cannot read it, nor is anything stored.
    expect(await page.evaluate(() => document.cookie)).toBe('');
    expect(await page.evaluate(() => localStorage.length + sessionStorage.length)).toBe(0);
    const cookie = (await page.context().cookies()).find((c) => c.name === 'roomgate_console')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/console' });

    // Ingress: create an RTMP input and read what to paste into OBS.
    await page.goto(`${gw.url}/console#ingress`);
    await page.selectOption('#ingress-form [name=type]', 'RTMP_INPUT');
    await page.fill('#ingress-form [name=name]', 'studio');
    await page.fill('#ingress-form [name=room]', 'show');
    await page.fill('#ingress-form [name=identity]', 'obs');
    await page.click('#ingress-form button');
    await page.waitForSelector('#obs [data-field=key]');
    const server = (await page.textContent('#obs [data-field=server]'))!;
    streamKey = (await page.textContent('#obs [data-field=key]'))!;
    expect(server).toBe(`rtmp://127.0.0.1:${gw.rtmpPort}/live`);
    expect(streamKey).toMatch(/^[\w-]{20,}$/);

    // What OBS sends with x264 defaults: B-frames on, a keyframe every 2 s.
    pusher = launchFfmpeg([
      '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-c:v', 'libx264', '-preset', 'veryfast', '-g', '60', '-b:v', '800k', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '96k',
      '-f', 'flv', `${server}/${streamKey}`,
    ]);

    // Health arrives pushed: picture, frame rate, keyframe interval, B-frames re-encoded.
    const row = '#ingresses tr.ingress[data-status=ENDPOINT_PUBLISHING]';
    await page.waitForSelector(`${row} [data-health=keyframe]`, { timeout: 60_000 });
    expect(await page.textContent(`${row} [data-health=video]`)).toMatch(/^h264 640×360 · \d+\.\d fps · \d+ kb\/s$/);
    expect(await page.textContent(`${row} [data-health=keyframe]`)).toMatch(/^keyframe every [12]\.\d s$/);
    expect(await page.textContent(`${row} [data-health=bframes]`)).toBe('B-frames: re-encoded');
    expect(await page.$(`${row} [data-warning=keyframe]`)).toBeNull();
    // The list shows only the key's start; the full key is in the OBS panel the operator opened.
    expect(await page.textContent('#ingresses')).not.toContain(streamKey);
    await screenshot('ingress');

    // Rooms: the ingress participant with its tracks, and a WHEP preview of its video.
    await page.goto(`${gw.url}/console#rooms`);
    const participant = '#rooms .room[data-room=show] tr.participant[data-identity=obs][data-kind=ingress]';
    await page.waitForSelector(`${participant} .track[data-type=video]`, { timeout: 30_000 });
    expect(await page.textContent(`${participant} .track[data-type=video]`)).toMatch(/video\/H264 640×360/i);
    expect(await page.$(`${participant} .track[data-type=audio]`)).not.toBeNull();
    await page.click(`${participant} .track[data-type=video] button.preview`);
    await page.waitForFunction(() => (document.querySelector('#preview-video') as HTMLVideoElement | null)?.videoWidth === 640, undefined, { timeout: 30_000 });
    await screenshot('rooms');
    await page.click('#preview-close');

    // Egress: record the room from the page; duration and size grow while ACTIVE.
    await page.goto(`${gw.url}/console#egress`);
    await page.waitForSelector('#queue .worker');
    await page.selectOption('#egress-form [name=kind]', 'room');
    await page.fill('#egress-form [name=room]', 'show');
    await page.fill('#egress-form [name=file]', 'console/show.mp4');
    await page.click('#egress-form button');
    await page.waitForSelector('#egresses .egress', { timeout: 30_000 });
    const egressId = (await page.getAttribute('#egresses .egress', 'data-egress'))!;
    const card = `#egresses .egress[data-egress=${egressId}]`;
    // STARTING until the worker's encoder has media out (slow on a busy machine), then ACTIVE.
    await waitFor(async () => {
      const status = await page.getAttribute(card, 'data-status');
      if (status !== 'EGRESS_STARTING' && status !== 'EGRESS_ACTIVE') throw new Error(`egress ${status}: ${await page.textContent(card)}`);
      return status === 'EGRESS_ACTIVE' ? true : undefined;
    }, 120_000, 'the egress to be ACTIVE');
    /** The card's text while ACTIVE; an egress that ended early fails the test with what the page says. */
    const activeText = async (field: string) => {
      const status = await page.getAttribute(card, 'data-status');
      if (status !== 'EGRESS_ACTIVE') throw new Error(`egress ${status}: ${await page.textContent(card)}`);
      return (await page.textContent(`${card} [data-progress=${field}]`)) ?? '';
    };
    const durationOf = async () => Number((await activeText('duration')).replace(' s', ''));
    const first = await waitFor(async () => ((await durationOf()) > 0 ? durationOf() : undefined), 30_000, 'a first progress report');
    await waitFor(async () => ((await durationOf()) > first + 3 ? true : undefined), 60_000, 'the duration to grow');
    // Fragmented MP4 grows a fragment per keyframe (the encoder's 4 s GOP), so the size moves in
    // steps; on a busy machine the first may come after the stop. The stored file is checked below.
    expect(await activeText('size')).toMatch(/^\d+(\.\d)? (B|KiB|MiB)$/);
    expect(await page.textContent('#queue .worker')).toContain(egressId);
    await screenshot('egress');

    await page.click(`${card} button.danger`);
    const done = `#egresses .egress[data-egress=${egressId}][data-status=EGRESS_COMPLETE]`;
    await page.waitForSelector(`${done} [data-progress=location]`, { timeout: 60_000 });
    const location = (await page.textContent(`${done} [data-progress=location]`))!;
    expect(fs.statSync(location).size).toBeGreaterThan(10_000);
    // How much media a few seconds hold depends on how fast the composite encodes on this machine.
    expect(probeSeconds(location)).toBeGreaterThan(0);

    // Apps saw the progress too: an egress_updated while ACTIVE with the file's duration and size.
    const receiver = new WebhookReceiver(API_KEY, API_SECRET);
    const activeUpdates = async () =>
      (await Promise.all(hooks.received.map((r) => receiver.receive(r.body, r.auth)))).filter(
        (e) => e.event === 'egress_updated' && e.egressInfo?.egressId === egressId && e.egressInfo.status === EgressStatus.EGRESS_ACTIVE,
      );
    const withProgress = await waitFor(async () => {
      const updates = await activeUpdates();
      return updates.find((e) => (e.egressInfo!.fileResults[0]?.duration ?? 0n) > 0n);
    }, 30_000, 'an egress_updated with the recorded duration');
    expect(withProgress.egressInfo!.fileResults[0]!.filename).toBe('console/show.mp4');
    // Sizes as they were on disk at each report (a fragment per keyframe): never shrinking.
    const sizes = (await activeUpdates()).map((e) => e.egressInfo!.fileResults[0]?.size ?? 0n);
    expect(sizes).toEqual([...sizes].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  }, 240_000);

  it('refuses expired and forged sessions, cross-site requests, and keeps the stream key out of the logs', async () => {
    const expired = issueSession(API_KEY, API_SECRET, -5).cookie;
    const r1 = await fetch(`${gw.url}/console/api/session`, { headers: { Cookie: `roomgate_console=${expired}` } });
    expect(r1.status).toBe(401);
    expect(((await r1.json()) as { msg: string }).msg).toBe('session expired: sign in again');
    const forged = issueSession(API_KEY, 'some-other-secret-of-enough-length-0000', 600).cookie;
    const r2 = await fetch(`${gw.url}/console/api/events`, { headers: { Cookie: `roomgate_console=${forged}` } });
    expect(r2.status).toBe(401);
    expect(((await r2.json()) as { msg: string }).msg).toBe('invalid session: sign in again');

    // A valid session and CSRF token, but the request comes from another origin: refused.
    const { cookie, session } = issueSession(API_KEY, API_SECRET, 600);
    const forgedPost = (origin: string) =>
      fetch(`${gw.url}/console/api/twirp/livekit.RoomService/DeleteRoom`, {
        method: 'POST',
        headers: { Cookie: `roomgate_console=${cookie}`, 'X-CSRF-Token': session.csrf, 'Content-Type': 'application/json', Origin: origin },
        body: JSON.stringify({ room: 'show' }),
      });
    const r3 = await forgedPost('http://127.0.0.1:9');
    expect(r3.status).toBe(403);
    expect(((await r3.json()) as { msg: string }).msg).toBe("cross-site request refused: Origin 'http://127.0.0.1:9' is not this console's");

    // The browser case: a page on another loopback port (the same *site*, so the SameSite cookie is
    // sent) posts to the console. It cannot know the CSRF token, and its Origin gives it away.
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!doctype html><script type="module">
        window.result = await fetch('${gw.url}/console/api/twirp/livekit.RoomService/DeleteRoom', { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'text/plain' }, body: '{"room":"show"}' }).then(() => 'sent', (e) => String(e));
        // The public SDK module imports from another origin (CORS).
        window.sdk = await import('${gw.url}/sdk/roomgate.js').then((m) => Object.keys(m).length > 0 ? 'imported' : 'empty', (e) => String(e));
      </script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    try {
      await page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      await page.waitForFunction(() => (window as unknown as { sdk?: string }).sdk !== undefined, undefined, { timeout: 60_000 });
      expect(await page.evaluate(() => (window as unknown as { result: string }).result)).toBe('sent');
      expect(await page.evaluate(() => (window as unknown as { sdk: string }).sdk)).toBe('imported');
    } finally {
      await new Promise<void>((resolve) => evil.close(() => resolve()));
    }
    const rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
    expect((await rooms.listRooms(['show'])).map((r) => r.name)).toEqual(['show']);

    // The gateway and its worker logged the whole session without ever writing the key.
    expect(gw.logs()).toContain('RTMP ingest pipeline started');
    expect(streamKey.length).toBeGreaterThan(20);
    expect(gw.logs()).not.toContain(streamKey);
  }, 120_000);
});
