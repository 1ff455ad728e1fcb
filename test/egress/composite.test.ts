// Room composite egress with the real EgressClient: three Node participants publish solid colours
// (VP8) and tones; a `grid` composite goes to a local MP4 and an RTMP sink at once. The picture
// shows three tiles while three publish and two after one leaves; the sink stays connected.
import { EgressClient, EgressStatus, EncodedFileOutput, EncodedFileType, StreamOutput, StreamProtocol } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gridCells } from '../../src/egress/composite/layoutKit.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import { sleep } from '../../src/time.ts';
import { twirpError } from '../helpers/errors.ts';
import { colourAt, frameAt, publishColour, type Colour } from '../helpers/composite.ts';
import { inProcessWorker, startRtmpSink, type RtmpSink, egressLookups } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe } from '../helpers/rtpRecorder.ts';

let redis: TestRedis;
let gw: Gateway;
let worker: EgressWorker;
let egress: EgressClient;
const sinks: RtmpSink[] = [];
const W = 1280;
const H = 720;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  worker = await inProcessWorker(gw);
  egress = new EgressClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
});

afterAll(async () => {
  await Promise.all(sinks.map((s) => s.stop()));
  await worker?.close();
  await gw?.close();
  await redis?.stop();
});

const { info } = egressLookups(() => egress);

function tileColours(rgb: Buffer, n: number): Colour[] {
  return gridCells(n, { x: 0, y: 0, w: W, h: H }).map((c) => colourAt(rgb, W, c.x + c.w / 2, c.y + c.h / 2));
}

describe('room composite egress', () => {
  it('refuses an unknown layout, a missing room and conflicting options precisely', async () => {
    const out = { file: new EncodedFileOutput({ filepath: 'x.mp4' }) };
    await gw.rooms.createRoom({ name: 'cbad' });
    const e1 = await twirpError(egress.startRoomCompositeEgress('cbad', out, { layout: 'mosaic' }));
    expect(e1.code).toBe('invalid_argument');
    expect(e1.message).toMatch(/^layout 'mosaic' does not exist; use one of .*grid.*grid-light.*speaker/);
    expect(await twirpError(egress.startRoomCompositeEgress('nowhere', out, { layout: 'grid' }))).toEqual({ code: 'not_found', message: "room 'nowhere' does not exist" });
    const e3 = await twirpError(egress.startRoomCompositeEgress('cbad', out, { layout: 'grid', audioOnly: true, videoOnly: true }));
    expect(e3).toEqual({ code: 'invalid_argument', message: 'audio_only and video_only exclude each other' });
    const e4 = await twirpError(egress.startRoomCompositeEgress('cbad', { file: new EncodedFileOutput({ filepath: 'x', fileType: EncodedFileType.OGG }) }, { layout: 'grid', videoOnly: true }));
    expect(e4.code).toBe('invalid_argument');
  });

  it('grid of three to MP4 and RTMP at once; one leaves and the picture follows while the sink stays connected', async () => {
    const [red, green, blue] = [await join(gw.url, 'cg', 'red'), await join(gw.url, 'cg', 'green'), await join(gw.url, 'cg', 'blue')];
    try {
      await publishColour(red, 'red', 300);
      await publishColour(green, 'green', 500);
      await publishColour(blue, 'blue', 700);
      const sink = await startRtmpSink('composite');
      sinks.push(sink);
      const started = await egress.startRoomCompositeEgress(
        'cg',
        { file: new EncodedFileOutput({ fileType: EncodedFileType.MP4, filepath: 'composite/{room_name}' }), stream: new StreamOutput({ protocol: StreamProtocol.RTMP, urls: [sink.url] }) },
        { layout: 'grid' },
      );
      expect(started.status).toBe(EgressStatus.EGRESS_STARTING);
      await waitFor(async () => ((await info(started.egressId)).status === EgressStatus.EGRESS_ACTIVE ? true : undefined), 30_000, 'ACTIVE');
      const activeAt = Date.now();
      await sleep(5000);
      const leftAt = Date.now();
      await blue.leave();
      await sleep(5000);
      const before = sink.size();
      await waitFor(() => (sink.size() > before ? true : undefined), 10_000, 'the sink to keep receiving');
      expect(await Promise.race([sink.ffmpeg.exited.then(() => 'exited'), sleep(10).then(() => 'running')])).toBe('running');
      await egress.stopEgress(started.egressId);
      const ended = await waitFor(async () => {
        const i = await info(started.egressId);
        return i.status === EgressStatus.EGRESS_COMPLETE || i.status === EgressStatus.EGRESS_FAILED ? i : undefined;
      }, 30_000, 'COMPLETE');
      expect(ended.error).toBe('');
      expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);
      const f = ended.fileResults[0]!;
      const p = probe(f.location);
      const v = p.streams.find((s) => s.codec_type === 'video')!;
      expect([v.codec_name, v.width, v.height]).toEqual(['h264', W, H]);
      expect(p.streams.some((s) => s.codec_name === 'aac')).toBe(true);
      const wall = Number(f.duration) / 1e9;
      // The bound. A compositor short of CPU skips frames to keep wall time rather than
      // recording a shorter video (docs/composite.md, One clock).
      expect(Math.abs(p.duration - wall) / wall).toBeLessThan(0.05);
      // The file starts at ACTIVE: media time ≈ wall time since then.
      const three = await frameAt(f.location, (leftAt - activeAt) / 1000 - 1.5);
      expect(tileColours(three, 3).sort()).toEqual(['blue', 'green', 'red']);
      const two = await frameAt(f.location, p.duration - 1.5);
      expect(tileColours(two, 2).sort()).toEqual(['green', 'red']);
      await sink.stop();
      expect(probe(sink.file).frames).toBeGreaterThan(100);
    } finally {
      await Promise.all([red.leave(), green.leave(), blue.leave().catch(() => undefined)]);
    }
  });
});
