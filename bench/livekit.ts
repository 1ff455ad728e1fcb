// npm run bench -- livekit: stock livekit-client against roomgate's own browser SDK, side by side in
// one run, in headless Chromium on loopback, watching one stream (a Node participant sending VP8
// 640×360 30 fps + Opus from FFmpeg):
//   - join → first remote frame decoded: from the page's join call (its `connecting` event) to the
//     publisher's <video> getting its size (the first decoded picture), p50 and p95 of JOINS each;
//   - the gateway's CPU (its process, which also runs this harness and the publisher, plus the
//     mediasoup worker) per watching page: N pages of one client at a time, over WINDOW_S, less the
//     same window with no page (the publisher alone).
// Page-side costs (Chromium decoding) are not the gateway's and are left out.
import { performance } from 'node:perf_hooks';
import { AccessToken } from 'livekit-server-sdk';
import type { Browser, BrowserContext } from 'playwright-core';
import { NodeParticipant } from '../src/client/node.ts';
import { launchChromium } from '../test/helpers/chromium.ts';
import { cpuSeconds } from './fanout.ts';
import { BENCH_KEY, BENCH_SECRET, startBenchGateway, type Recorder } from './gateway.ts';

const ROOM = 'bench-lk';
const JOINS = 10;
const WINDOW_S = 10;
const CLIENTS = [
  { name: 'livekit-client', path: '/lk', state: 'lk' },
  { name: 'roomgate SDK', path: '/', state: 'demo' },
] as const;
type Client = (typeof CLIENTS)[number];

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function token(identity: string, canPublish: boolean): Promise<string> {
  const at = new AccessToken(BENCH_KEY, BENCH_SECRET, { identity });
  at.addGrant({ roomJoin: true, room: ROOM, canPublish, canSubscribe: true });
  return at.toJwt();
}

/** Opens a watching page of `client`; resolves with its join → first frame (ms) and its context. */
async function watch(browser: Browser, url: string, client: Client, identity: string): Promise<{ firstFrameMs: number; context: BrowserContext }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const q = new URLSearchParams({ room: ROOM, identity, autojoin: '1', cam: '0', mic: '0', token: await token(identity, false) });
  await page.goto(`${url}${client.path}?${q.toString()}`);
  type Events = { events: { name: string; data: unknown; at: number }[] };
  const state = client.state;
  const handle = await page.waitForFunction(
    (s) => {
      const events = (window as unknown as Record<string, Events | undefined>)[s]?.events ?? [];
      const error = events.find((e) => e.name === 'error');
      if (error) return { error: String(error.data) };
      const start = events.find((e) => e.name === 'connecting');
      const frame = events.find((e) => e.name === 'firstFrame' && e.data === 'pub');
      return start && frame ? { ms: frame.at - start.at } : undefined;
    },
    state,
    { timeout: 60_000, polling: 20 },
  );
  const result = (await handle.jsonValue()) as { ms?: number; error?: string };
  if (result.error !== undefined || result.ms === undefined) throw new Error(`${client.name} page failed: ${result.error ?? 'no first frame'}`);
  return { firstFrameMs: result.ms, context };
}

export async function runLivekit(record: Recorder, subscribers = 4): Promise<void> {
  const bench = await startBenchGateway();
  const { gw } = bench;
  const workerPid = gw.mediaWorkerPids[0]!;
  const browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  const publisher = await NodeParticipant.connect(gw.url, await token('pub', true));
  try {
    await publisher.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'VP8', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30'] });
    await publisher.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });

    // Alternating clients, so that a drift of the machine's load weighs on both alike.
    const firstFrames = new Map<string, number[]>(CLIENTS.map((c) => [c.name, []]));
    for (let i = 0; i < JOINS; i++) {
      for (const c of CLIENTS) {
        const { firstFrameMs, context } = await watch(browser, gw.url, c, `${c.state}-join-${i}`);
        firstFrames.get(c.name)!.push(firstFrameMs);
        await context.close();
      }
    }
    for (const c of CLIENTS) {
      const sorted = firstFrames.get(c.name)!.sort((a, b) => a - b);
      record(`${c.name}: join → first remote frame p50`, pct(sorted, 50), 'ms', `p95 ${pct(sorted, 95).toFixed(0)} ms, ${sorted.length} joins`);
    }

    const cpuOver = async (): Promise<number> => {
      const w0 = cpuSeconds(workerPid);
      const p0 = process.cpuUsage();
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      const p = process.cpuUsage(p0);
      return (cpuSeconds(workerPid) - w0 + (p.user + p.system) / 1e6) / ((performance.now() - t0) / 1000);
    };
    const baseline = await cpuOver();
    record('gateway CPU, publisher alone (baseline)', baseline, 'cores');
    for (const c of CLIENTS) {
      const contexts: BrowserContext[] = [];
      try {
        for (let i = 0; i < subscribers; i++) contexts.push((await watch(browser, gw.url, c, `${c.state}-cpu-${i}`)).context);
        const cores = await cpuOver();
        record(`${c.name}: gateway CPU per watching page (${subscribers} pages)`, (cores - baseline) / subscribers, 'cores', `${cores.toFixed(3)} cores in all`);
      } finally {
        for (const ctx of contexts) await ctx.close();
      }
    }
  } finally {
    await publisher.leave().catch(() => undefined);
    await browser.close();
    await bench.close();
  }
}
