// The LiveKit demo page (`/lk`, stock livekit-client in headless Chromium) driven from tests: open it
// joined and publishing, read its media stats and chat, wait until it decodes another participant.
import type { Browser, Page } from 'playwright-core';
import { expect } from 'vitest';
import { waitFor } from './net.ts';
import { joinToken } from './participants.ts';

export interface LkStat {
  identity: string;
  kind: string;
  packetsReceived: number;
  framesDecoded: number;
  width: number;
  elementWidth: number;
}

/** What templates/livekit exposes as `window.lk`. */
export interface Lk {
  events: { name: string; data: unknown }[];
  chat: { from: string | null; text: string; topic: string | null; kind: number }[];
  mediaStats(): Promise<LkStat[]>;
  sendChat(text: string, opts?: Record<string, unknown>): Promise<void>;
}

/**
 * A new page joined to `room` as `identity`, once it has published (a page error fails the test).
 * `query` adds the page's options, e.g. `&cam=0&processing=off` for a raw microphone only.
 */
export async function openLk(browser: Browser, gatewayUrl: string, room: string, identity: string, grant: Record<string, boolean> = {}, query = ''): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => {
    pageErrors.push(err.message);
    console.error(`[${identity}] page error:`, err.message);
  });
  if (process.env.LK_DEBUG) page.on('console', (m) => console.log(`[${identity}] ${m.text()}`));
  const token = await joinToken(room, identity, grant);
  await page.goto(`${gatewayUrl}/lk?room=${room}&identity=${identity}&autojoin=1&token=${token}${query}`);
  await waitFor(
    async () => pageErrors.length > 0 || (await page.evaluate(() => (window as unknown as { lk?: Lk }).lk?.events.some((e) => e.name === 'published' || e.name === 'error'))),
    45_000,
    `${identity} joined and published`,
  );
  expect(pageErrors).toEqual([]);
  expect(await page.evaluate(() => (window as unknown as { lk: Lk }).lk.events.find((e) => e.name === 'error'))).toBeUndefined();
  return page;
}

export const lkStats = (page: Page): Promise<LkStat[]> => page.evaluate(() => (window as unknown as { lk: Lk }).lk.mediaStats());
export const lkChat = (page: Page): Promise<Lk['chat']> => page.evaluate(() => (window as unknown as { lk: Lk }).lk.chat);

/** Waits until `page` decodes video (and receives audio, unless `audio` is false) from `other`, then sees both grow. */
export async function expectMediaFrom(page: Page, other: string, audio = true): Promise<void> {
  const pick = (s: LkStat[], kind: string) => s.find((x) => x.identity === other && x.kind === kind);
  let last: LkStat[] = [];
  const first = await waitFor(
    async () => {
      const s = (last = await lkStats(page));
      const v = pick(s, 'video');
      const a = pick(s, 'audio');
      return v && v.framesDecoded > 0 && v.elementWidth > 0 && (!audio || (a && a.packetsReceived > 0)) ? { v, a } : undefined;
    },
    40_000,
    `decoded media from ${other}`,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last stats: ${JSON.stringify(last)}`);
  });
  await waitFor(
    async () => {
      const s = await lkStats(page);
      const more = (pick(s, 'video')?.framesDecoded ?? 0) > first.v.framesDecoded;
      return more && (!audio || (pick(s, 'audio')?.packetsReceived ?? 0) > first.a!.packetsReceived) ? true : undefined;
    },
    10_000,
    `more media from ${other}`,
  );
}

/**
 * The strongest frequency of `identity`'s audio as the page plays it (Web Audio analyser, ~6 Hz bins),
 * once it is louder than -50 dBFS; 0 when it never is within `ms`. Chromium feeds a remote WebRTC
 * track to Web Audio only while a media element plays it: the page attaches one per track, and the
 * browser needs `--autoplay-policy=no-user-gesture-required`.
 */
export function lkPitchOf(page: Page, identity: string, ms: number): Promise<number> {
  return page.evaluate(
    async ([who, within]) => {
      type AudioPub = { track?: { mediaStreamTrack: MediaStreamTrack } };
      const room = (window as unknown as { lk: { room: { remoteParticipants: Map<string, { audioTrackPublications: Map<string, AudioPub> }> } } }).lk.room;
      const deadline = Date.now() + within;
      const sleep = () => new Promise((r) => setTimeout(r, 100));
      let track: MediaStreamTrack | undefined;
      while (!track && Date.now() < deadline) {
        track = [...(room.remoteParticipants.get(who)?.audioTrackPublications.values() ?? [])].find((p) => p.track)?.track?.mediaStreamTrack;
        if (!track) await sleep();
      }
      if (!track) return 0;
      const ctx = new AudioContext();
      try {
        await ctx.resume();
        const analyser = ctx.createAnalyser();
        analyser.fftSize = 8192;
        ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
        const bins = new Float32Array(analyser.frequencyBinCount);
        while (Date.now() < deadline) {
          await sleep();
          analyser.getFloatFrequencyData(bins);
          let peak = 1;
          for (let i = 2; i < bins.length; i++) if (bins[i]! > bins[peak]!) peak = i;
          if (bins[peak]! > -50) return (peak * ctx.sampleRate) / analyser.fftSize;
        }
        return 0;
      } finally {
        await ctx.close();
      }
    },
    [identity, ms] as const,
  );
}
