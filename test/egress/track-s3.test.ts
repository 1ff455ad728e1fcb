// Track egress with the real EgressClient: a VP8 track recorded without transcoding into WebM and
// uploaded to S3 (s3rver); the object downloads and ffprobe confirms codec and duration.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DirectFileOutput, EgressClient, EgressStatus, S3Upload } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import { BUCKET, inProcessWorker, startS3, type TestS3 } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe } from '../helpers/rtpRecorder.ts';

let redis: TestRedis;
let gw: Gateway;
let worker: EgressWorker;
let s3: TestS3;
let egress: EgressClient;

beforeAll(async () => {
  redis = await startRedis();
  s3 = await startS3();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  worker = await inProcessWorker(gw);
  egress = new EgressClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  await worker?.close();
  await gw?.close();
  await s3?.stop();
  await redis?.stop();
});

describe('track egress', () => {
  it('records a VP8 track into WebM on S3 without transcoding', async () => {
    const alice = await join(gw.url, 'tr', 'alice');
    try {
      const video = await alice.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'] });
      const started = await egress.startTrackEgress(
        'tr',
        new DirectFileOutput({ filepath: 'tracks/{room_name}-{track_id}', output: { case: 's3', value: new S3Upload({ ...s3.settings }) } }),
        video.trackSid,
      );
      expect(started.egressId).toMatch(/^EG_/);
      expect(started.status).toBe(EgressStatus.EGRESS_STARTING);
      expect(JSON.stringify(started.toJson())).not.toContain('S3RVER'); // credentials never echoed
      await waitFor(async () => (await egress.listEgress({ egressId: started.egressId }))[0]?.status === EgressStatus.EGRESS_ACTIVE || undefined, 20_000, 'ACTIVE');
      await new Promise((r) => setTimeout(r, 10_000));
      await egress.stopEgress(started.egressId);
      const ended = await waitFor(async () => {
        const [i] = await egress.listEgress({ egressId: started.egressId });
        return i && i.status === EgressStatus.EGRESS_COMPLETE ? i : undefined;
      }, 30_000, 'COMPLETE');
      const f = ended.fileResults[0]!;
      expect(f.filename).toBe(`tracks/tr-${video.trackSid}.webm`);
      expect(f.location).toBe(`${s3.endpoint}/${BUCKET}/${f.filename}`);
      expect(Number(f.size)).toBeGreaterThan(1000);
      const body = await s3.get(f.filename);
      expect(body.length).toBe(Number(f.size));
      const local = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-dl-')), 'out.webm');
      fs.writeFileSync(local, body);
      const p = probe(local);
      expect(p.streams.map((s) => s.codec_name)).toEqual(['vp8']);
      const recorded = Number(ended.endedAt - ended.startedAt) / 1e9;
      expect(Math.abs(p.duration - recorded) / recorded).toBeLessThan(0.1);
    } finally {
      await alice.leave();
    }
  });
});
