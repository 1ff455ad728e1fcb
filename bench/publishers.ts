// npm run bench -- publishers: per publisher shape of the test corpus (test/helpers/publisherCorpus.ts),
// StartEgress → first byte at an RTMP destination and → first frame in the file (p50 of 5), a new
// Chromium viewer's first decoded frame (p50 of 5), and how much of the wall time from StartEgress
// to StopEgress the recording covers. Goals: first frame of a recording ≤ 1.0 s, coverage ≥ 99 %.
// BENCH_SHAPES=obs-default,gst-rtmp2sink picks shapes. Nothing here asserts.
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { EgressStatus, EncodedFileOutput, StreamOutput } from 'livekit-server-sdk';
import { sleep } from '../src/time.ts';
import { launchChromium } from '../test/helpers/chromium.ts';
import { waitFor } from '../test/helpers/net.ts';
import { measureOutput, prepareCorpus, PUBLISHER_SHAPES, type ShapeName } from '../test/helpers/publisherCorpus.ts';
import { publishShape, startRig, viewerFirstFrame, type Published, type Rig } from '../test/helpers/publisherMatrix.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { firstByteSink } from './egress.ts';

export interface PublisherFigures {
  shape: string;
  keyframeIntervalS: number;
  firstByteMs?: number;
  firstFrameMs?: number;
  viewerMs?: number;
  coveragePct?: number;
  note?: string;
}

const RUNS = 5;
const RECORD_S = 6;
const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)]!;
};

async function ended(rig: Rig, id: string) {
  return waitFor(async () => {
    const i = (await rig.egress.listEgress({ egressId: id }))[0];
    return i && i.status >= EgressStatus.EGRESS_COMPLETE ? i : undefined;
  }, 40_000, 'egress end');
}

/** Seconds between the first and the last picture-carrying video packet (audio for audio-only). */
function mediaSpan(file: string, video: boolean): number {
  const res = spawnSync('ffprobe', ['-v', 'error', '-select_streams', video ? 'v:0' : 'a:0', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  const t = res.stdout.split('\n').map(Number).filter((x) => Number.isFinite(x) && res.stdout.length > 0);
  return t.length < 2 ? 0 : Math.max(...t) - Math.min(...t);
}

async function benchShape(rig: Rig, pub: Published): Promise<PublisherFigures> {
  const s = pub.publisher.shape;
  const fig: PublisherFigures = { shape: s.name, keyframeIntervalS: Math.round(s.keyframeIntervalS * 10) / 10 };

  // StartEgress → first byte at an RTMP destination (participant egress, passthrough where it can).
  const firstBytes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const sink = await firstByteSink();
    const t0 = performance.now();
    const info = await rig.egress.startParticipantEgress(pub.room, pub.identity, { stream: new StreamOutput({ urls: [sink.url] }) });
    firstBytes.push((await Promise.race([sink.first, sleep(15_000).then(() => Number.NaN)])) - t0);
    sink.close();
    await rig.egress.stopEgress(info.egressId).catch(() => undefined);
    await ended(rig, info.egressId);
  }
  fig.firstByteMs = median(firstBytes);

  // StartEgress → first frame in the file, and coverage: a participant egress to a file for RECORD_S;
  // the head the file lacks is the wall time minus the span of its media (its tail is complete: the
  // stop drains it).
  const firstFrames: number[] = [];
  const coverages: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = Date.now();
    const info = await rig.egress.startParticipantEgress(pub.room, pub.identity, { file: new EncodedFileOutput({ filepath: `bench-publishers/${s.name}-${i}` }) });
    await sleep(RECORD_S * 1000);
    const t1 = Date.now();
    await rig.egress.stopEgress(info.egressId).catch(() => undefined);
    const done = await ended(rig, info.egressId);
    const file = done.fileResults[0]?.location;
    if (done.status !== EgressStatus.EGRESS_COMPLETE || !file) {
      fig.note = `${EgressStatus[done.status]} ${done.error}`;
      firstFrames.push(Number.NaN);
      coverages.push(0);
      continue;
    }
    const wall = (t1 - t0) / 1000;
    firstFrames.push(Math.max(0, wall - mediaSpan(file, !!s.video)) * 1000);
    coverages.push(measureOutput(file, t0, t1).coverage);
  }
  fig.firstFrameMs = median(firstFrames);
  fig.coveragePct = median(coverages) * 100;

  if (s.video && rig.browser) {
    const views: number[] = [];
    for (let i = 0; i < RUNS; i++) views.push(await viewerFirstFrame(rig, pub, 'sdk', 30_000).catch(() => Number.NaN));
    fig.viewerMs = median(views);
  }
  return fig;
}

export async function runPublishers(): Promise<PublisherFigures[]> {
  const only = process.env.BENCH_SHAPES?.split(',') as ShapeName[] | undefined;
  const shapes = PUBLISHER_SHAPES.filter((s) => !only || only.includes(s.name));
  await prepareCorpus(shapes.map((s) => s.name));
  const redis = await startRedis();
  const browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  const rig = await startRig(redis.url, browser);
  const out: PublisherFigures[] = [];
  try {
    for (const s of shapes) {
      let pub: Published | undefined;
      try {
        pub = await publishShape(rig, s, `bench-${s.name}`);
        // Past the ingress's start-up, as a recording of a running stream would be.
        await sleep(3000);
        out.push(await benchShape(rig, pub));
      } catch (err) {
        out.push({ shape: s.name, keyframeIntervalS: Math.round(s.keyframeIntervalS * 10) / 10, note: String(err).slice(0, 160) });
      } finally {
        await pub?.stop();
      }
    }
  } finally {
    await rig.close();
    await browser.close();
    await redis.stop();
  }
  return out;
}

export function printPublishers(rows: PublisherFigures[]): void {
  const f = (ms?: number) => (ms === undefined || Number.isNaN(ms) ? '—' : (ms / 1000).toFixed(2));
  console.log('\npublisher shapes: StartEgress → first RTMP byte / first frame in the file (p50 of 5), new viewer first frame (p50 of 5), recording coverage of wall time');
  console.log('goals: first frame ≤ 1.00 s, coverage ≥ 99 %');
  console.log(`${'shape'.padEnd(14)}  keyint s  first byte s  first frame s  viewer s  coverage  note`);
  for (const r of rows) {
    console.log(
      [
        r.shape.padEnd(14),
        String(r.keyframeIntervalS || 'PLI').padStart(8),
        f(r.firstByteMs).padStart(12),
        f(r.firstFrameMs).padStart(13),
        f(r.viewerMs).padStart(8),
        (r.coveragePct === undefined ? '—' : `${r.coveragePct.toFixed(0)} %`).padStart(8),
        r.note ?? '',
      ].join('  '),
    );
  }
}
