// A covering subset of the publisher matrix (the whole of it runs in `npm run test:matrix`): OBS's
// default shape (keyframe every 8.3 s, B-frames) recorded by a track egress and a participant egress
// (file and RTMP) and watched by a new Chromium viewer, and GStreamer's own RTMP stack (rtmp2sink)
// arriving as a participant with both its tracks. Each output must decode and cover ≥ 90 % of the
// wall time from the source's first keyframe after StartEgress; the viewer's first frame must come
// within the source's keyframe interval plus 1 s (stretched by the load factor).
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.ts';
import { scaled } from '../helpers/deadline.ts';
import { shape } from '../helpers/publisherCorpus.ts';
import { publishShape, recordCell, startRig, viewerFirstFrame, type CellResult, type Published, type Rig } from '../helpers/publisherMatrix.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let browser: Browser;
let rig: Rig;

beforeAll(async () => {
  redis = await startRedis();
  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  rig = await startRig(redis.url, browser);
});

afterAll(async () => {
  await rig?.close();
  await browser?.close();
  await redis?.stop();
});

const RECORD_S = 8;

function expectCovered(cell: CellResult, outputs: ('file' | 'rtmp' | 'hls')[]) {
  expect(cell.status, cell.error).toBe('EGRESS_COMPLETE');
  for (const o of outputs) {
    const m = cell[o];
    expect(m, `${cell.kind} ${o} output`).toBeDefined();
    expect(m!.decodeOk, `${cell.kind} ${o} decodes: ${m!.decodeErrors}`).toBe(true);
    expect(m!.coverage, `${cell.kind} ${o}: ${m!.content.toFixed(1)} s of picture over ${((cell.stoppedAt - Math.max(cell.startedAt, cell.keyframeAt)) / 1000).toFixed(1)} s`).toBeGreaterThanOrEqual(0.9);
  }
}

describe('real publisher shapes (subset)', () => {
  describe('OBS defaults over RTMP', () => {
    const obs = shape('obs-default');
    let pub: Published;
    beforeAll(async () => {
      pub = await publishShape(rig, obs, 'pub-obs');
    }, scaled(180_000)); // the first run encodes the corpus clip
    afterAll(async () => {
      await pub?.stop();
    });

    it('a track egress to a file decodes and covers the time after the first keyframe', async () => {
      expectCovered(await recordCell(rig, pub, 'track', RECORD_S), ['file']);
    }, scaled(120_000));

    it('a participant egress to a file and RTMP decodes and covers it', async () => {
      const cell = await recordCell(rig, pub, 'participant', RECORD_S);
      expectCovered(cell, ['file', 'rtmp']);
      expect(cell.file!.codecs).toEqual(['aac', 'h264']);
    }, scaled(120_000));

    it('a new Chromium viewer decodes a frame within the keyframe interval + 1 s', async () => {
      const bound = obs.keyframeIntervalS * 1000 + scaled(1000);
      const ms = await viewerFirstFrame(rig, pub, 'sdk', bound + scaled(20_000));
      expect(ms).toBeLessThanOrEqual(bound);
    }, scaled(90_000));
  });

  it('GStreamer rtmp2sink (video + AAC) becomes a participant with video and audio', async () => {
    const pub = await publishShape(rig, shape('gst-rtmp2sink'), 'pub-gst');
    try {
      expect(pub.video).toBeDefined();
      expect(pub.audio).toBeDefined();
    } finally {
      await pub.stop();
    }
  }, scaled(90_000));
});
