// Recordings never overwrite each other (issue 19): two egresses given one file path get two
// files (the second numbered, reported in fileResults), and an object already in S3 under the
// asked name is left as it is.
import fs from 'node:fs';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { DirectFileOutput, EgressClient, EgressStatus, S3Upload } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant } from '../../src/client/node.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import { s3Client } from '../../src/storage/s3.ts';
import { sleep } from '../../src/time.ts';
import { BUCKET, egressLookups, inProcessWorker, startS3, type TestS3 } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let worker: EgressWorker;
let s3: TestS3;
let egress: EgressClient;
let alice: NodeParticipant;
let audioSid = '';
const { status } = egressLookups(() => egress);

beforeAll(async () => {
  redis = await startRedis();
  s3 = await startS3();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  worker = await inProcessWorker(gw);
  egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  alice = await join(gw.url, 'names', 'alice');
  audioSid = (await alice.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] })).trackSid;
});

afterAll(async () => {
  await alice?.leave();
  await worker?.close();
  await gw?.close();
  await s3?.stop();
  await redis?.stop();
});

/** Records the track for a few seconds into each output at once; the ended infos, in order. */
async function recordAll(outputs: DirectFileOutput[]) {
  const started = await Promise.all(outputs.map((o) => egress.startTrackEgress('names', o, audioSid)));
  await Promise.all(started.map((s) => status(s.egressId, EgressStatus.EGRESS_ACTIVE, 30_000)));
  await sleep(3000);
  await Promise.all(started.map((s) => egress.stopEgress(s.egressId)));
  return Promise.all(started.map((s) => status(s.egressId, EgressStatus.EGRESS_COMPLETE, 30_000)));
}

describe('recording names', () => {
  it('two egresses with one filepath write two local files, the second numbered', async () => {
    const ended = await recordAll([new DirectFileOutput({ filepath: 'same/rec' }), new DirectFileOutput({ filepath: 'same/rec' })]);
    const names = ended.map((i) => i.fileResults[0]!.filename).sort();
    expect(names).toEqual(['same/rec-1.ogg', 'same/rec.ogg']);
    const locations = ended.map((i) => i.fileResults[0]!.location);
    expect(new Set(locations).size).toBe(2);
    for (const i of ended) {
      const f = i.fileResults[0]!;
      expect(f.location.endsWith(f.filename)).toBe(true);
      expect(fs.statSync(f.location).size).toBe(Number(f.size));
      expect(Number(f.size)).toBeGreaterThan(1000);
    }
  });

  it('an object already in S3 under the asked name is not overwritten', async () => {
    const client = s3Client(s3.settings);
    const before = Buffer.from('someone else\'s recording');
    try {
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'taken/rec.ogg', Body: before }));
    } finally {
      client.destroy();
    }
    const [ended] = await recordAll([new DirectFileOutput({ filepath: 'taken/rec', output: { case: 's3', value: new S3Upload({ ...s3.settings }) } })]);
    const f = ended!.fileResults[0]!;
    expect(f.filename).toBe('taken/rec-1.ogg');
    expect(f.location).toBe(`${s3.endpoint}/${BUCKET}/taken/rec-1.ogg`);
    expect((await s3.get('taken/rec.ogg')).equals(before)).toBe(true);
    expect((await s3.get('taken/rec-1.ogg')).length).toBe(Number(f.size));
  });
});
