// Redis restarted (and emptied) while an egress streams: nothing crashes, the media keeps flowing
// to the destination, and once Redis is back the API and the queue work again.
import { spawn, type ChildProcess } from 'node:child_process';
import { EgressClient, EgressStatus, EncodedFileOutput, StreamOutput } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant } from '../../src/client/node.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import { runningFfmpegPids } from '../../src/media/ffmpeg.ts';
import type { Gateway } from '../../src/main.ts';
import { inProcessWorker, startRtmpSink, type RtmpSink } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';

let port = 0;
let redis: ChildProcess | undefined;
let gw: Gateway;
let worker: EgressWorker;
let alice: NodeParticipant;
let sink: RtmpSink;

function startRedisOn(p: number): ChildProcess {
  return spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
}
async function stopRedis(): Promise<void> {
  const r = redis;
  if (!r || r.exitCode !== null) return;
  const exited = new Promise((resolve) => r.once('exit', resolve));
  r.kill('SIGKILL');
  await exited;
}
const healthy = async () => (await fetch(`${gw.url}/healthz`)).status === 200;

beforeAll(async () => {
  port = await freePort();
  redis = startRedisOn(port);
  await new Promise((r) => setTimeout(r, 300));
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: `redis://127.0.0.1:${port}` });
  worker = await inProcessWorker(gw, { ROOMGATE_EGRESS_MAX_CPU: '8' }); // room for two jobs
  alice = await join(gw.url, 'rr', 'alice');
  await alice.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'H264', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'] });
});

afterAll(async () => {
  await alice?.leave();
  await sink?.stop();
  await worker?.close();
  await gw?.close();
  await stopRedis();
});

describe('Redis restarted mid-job', () => {
  it('keeps streaming, does not crash, and works again once Redis is back', async () => {
    const egress = new EgressClient(gw.url, API_KEY, API_SECRET);
    sink = await startRtmpSink('rr');
    const started = await egress.startParticipantEgress('rr', 'alice', { stream: new StreamOutput({ urls: [sink.url] }) });
    await waitFor(() => (sink.size() > 30_000 ? true : undefined), 20_000, 'sink to receive');

    await stopRedis();
    const during = sink.size();
    await waitFor(() => (sink.size() > during + 30_000 ? true : undefined), 20_000, 'media to keep flowing without Redis');
    expect(await healthy()).toBe(false);

    redis = startRedisOn(port);
    await waitFor(() => healthy().then((ok) => ok || undefined), 20_000, 'gateway healthy again');
    const after = sink.size();
    await waitFor(() => (sink.size() > after + 30_000 ? true : undefined), 20_000, 'media after Redis is back');
    expect(worker.runningJobs).toEqual([started.egressId]);

    // The restarted Redis is empty (no persistence here): the old record is gone, new work runs.
    const again = await egress.startParticipantEgress('rr', 'alice', { file: new EncodedFileOutput({ filepath: 'after-restart' }) });
    await waitFor(async () => ((await egress.listEgress({ egressId: again.egressId }))[0]?.status === EgressStatus.EGRESS_ACTIVE ? true : undefined), 30_000, 'new egress ACTIVE');
    await egress.stopEgress(again.egressId);
    await waitFor(async () => ((await egress.listEgress({ egressId: again.egressId }))[0]?.status === EgressStatus.EGRESS_COMPLETE ? true : undefined), 30_000, 'new egress COMPLETE');
  });

  it('leaves no FFmpeg running but the publisher and the sink', async () => {
    await worker.close();
    await sink.stop();
    await waitFor(() => (runningFfmpegPids().length === 1 ? true : undefined), 15_000, 'egress FFmpeg to exit');
  });
});
