// Egress under pressure: a full worker queues (both calls answer STARTING at once), a SIGKILLed
// worker's job is finished honestly by another worker (the media before the kill kept and
// playable), and S3 down at upload time leaves the file in the backup folder until S3 returns.
import { execFileSync } from 'node:child_process';
import { DirectFileOutput, EgressClient, EgressStatus, EncodedFileOutput, EncodedFileType, S3Upload } from 'livekit-server-sdk';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant } from '../../src/client/node.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import { runningFfmpegPids } from '../../src/media/ffmpeg.ts';
import type { Gateway } from '../../src/main.ts';
import { BUCKET, childWorker, inProcessWorker, startS3, type TestS3, egressLookups } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { isAlive, waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe } from '../helpers/rtpRecorder.ts';

let redis: TestRedis;
let gw: Gateway;
let egress: EgressClient;
let alice: NodeParticipant;
let s3: TestS3;
let audioSid = '';
const workers: EgressWorker[] = [];

beforeAll(async () => {
  redis = await startRedis();
  s3 = await startS3();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  alice = await join(gw.url, 'fr', 'alice');
  await alice.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'H264', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'] });
  audioSid = (await alice.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] })).trackSid;
});

afterAll(async () => {
  await alice?.leave();
  for (const w of workers) await w.close();
  await gw?.close();
  await s3?.stop();
  await redis?.stop();
});

const { info, status } = egressLookups(() => egress);
const mp4 = (name: string) => ({ file: new EncodedFileOutput({ fileType: EncodedFileType.MP4, filepath: `faults/${name}` }) });

describe('egress faults', () => {
  it('queues when the worker is full: both STARTING, the second runs when the first stops', async () => {
    // Capacity 1 core, participant egress costs 2: one at a time (an idle worker always takes one).
    const w = await inProcessWorker(gw, { ROOMGATE_EGRESS_MAX_CPU: '1' });
    workers.push(w);
    try {
      const first = await egress.startParticipantEgress('fr', 'alice', mp4('q1'));
      const second = await egress.startParticipantEgress('fr', 'alice', mp4('q2'));
      expect([first.status, second.status]).toEqual([EgressStatus.EGRESS_STARTING, EgressStatus.EGRESS_STARTING]);
      await status(first.egressId, EgressStatus.EGRESS_ACTIVE);
      await new Promise((r) => setTimeout(r, 2500));
      expect((await info(second.egressId)).status).toBe(EgressStatus.EGRESS_STARTING);
      expect(w.runningJobs).toEqual([first.egressId]);
      await egress.stopEgress(first.egressId);
      await status(first.egressId, EgressStatus.EGRESS_COMPLETE);
      await status(second.egressId, EgressStatus.EGRESS_ACTIVE);
      await egress.stopEgress(second.egressId);
      await status(second.egressId, EgressStatus.EGRESS_COMPLETE);
      // A third, stopped while it still waits in the queue, ends ABORTED without ever running.
      const blocker = await egress.startParticipantEgress('fr', 'alice', mp4('q3'));
      await status(blocker.egressId, EgressStatus.EGRESS_ACTIVE);
      const queued = await egress.startParticipantEgress('fr', 'alice', mp4('q4'));
      const stopped = await egress.stopEgress(queued.egressId);
      expect(stopped.status).toBe(EgressStatus.EGRESS_ABORTED);
      await egress.stopEgress(blocker.egressId);
      await status(blocker.egressId, EgressStatus.EGRESS_COMPLETE);
    } finally {
      await w.close();
    }
  });

  it('finishes the job of a SIGKILLed worker honestly, keeping the media recorded before the kill', async () => {
    const child = childWorker(gw, { ROOMGATE_EGRESS_STALL_TIMEOUT: '4' });
    const started = await egress.startParticipantEgress('fr', 'alice', mp4('killed'));
    await status(started.egressId, EgressStatus.EGRESS_ACTIVE, 40_000);
    await new Promise((r) => setTimeout(r, 4000));
    const ffmpegs = execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number).filter(Boolean);
    expect(ffmpegs.length).toBeGreaterThanOrEqual(2); // encoder + file sink
    process.kill(child.pid, 'SIGKILL');
    await child.exited;
    // Its FFmpeg processes end by themselves: the encoder on a broken pipe, the sink at end of input.
    await waitFor(() => (ffmpegs.every((p) => !isAlive(p)) ? true : undefined), 20_000, 'orphaned FFmpeg to exit');
    expect((await info(started.egressId)).status).toBe(EgressStatus.EGRESS_ACTIVE);
    const rescuer = await inProcessWorker(gw, { ROOMGATE_EGRESS_STALL_TIMEOUT: '4' });
    workers.push(rescuer);
    const ended = await status(started.egressId, EgressStatus.EGRESS_FAILED, 40_000);
    expect(ended.error).toMatch(/worker .* stopped .*the media recorded before is kept/);
    const f = ended.fileResults[0]!;
    expect(fs.existsSync(f.location)).toBe(true);
    const p = probe(f.location);
    expect(p.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
    expect(p.duration).toBeGreaterThan(2);
    await rescuer.close();
  });

  it('keeps the file in the backup folder while S3 is down and uploads it when S3 is back', async () => {
    const w = await inProcessWorker(gw);
    workers.push(w);
    try {
      const started = await egress.startTrackEgress(
        'fr',
        new DirectFileOutput({ filepath: 'backup/{track_id}', output: { case: 's3', value: new S3Upload({ ...s3.settings }) } }),
        audioSid,
      );
      await status(started.egressId, EgressStatus.EGRESS_ACTIVE);
      await new Promise((r) => setTimeout(r, 2000));
      await s3.stop();
      await egress.stopEgress(started.egressId);
      const ended = await status(started.egressId, EgressStatus.EGRESS_COMPLETE, 40_000);
      expect(ended.backupStorageUsed).toBe(true);
      const backup = ended.fileResults[0]!.location;
      expect(backup.startsWith(gw.config.egress.backup_dir.replace(/^\.\//, '')) || backup.includes('egress-backup')).toBe(true);
      expect(fs.existsSync(backup)).toBe(true);
      await s3.start();
      const uploaded = await waitFor(async () => {
        const i = await info(started.egressId);
        return i.fileResults[0]!.location.startsWith(s3.endpoint) ? i : undefined;
      }, 40_000, 'upload after S3 is back');
      const f = uploaded.fileResults[0]!;
      expect(f.location).toBe(`${s3.endpoint}/${BUCKET}/${f.filename}`);
      expect((await s3.get(f.filename)).length).toBe(Number(f.size));
      expect(fs.existsSync(backup)).toBe(false);
    } finally {
      await w.close();
    }
  });

  it('leaves no FFmpeg running', async () => {
    await waitFor(() => (runningFfmpegPids().length === 2 ? true : undefined), 15_000, 'only the publisher FFmpegs');
  });
});
