// Participant egress with the real EgressClient: one participant's H.264 + Opus restreamed to
// several RTMP sinks (`ffmpeg -listen 1`) as H.264 (passthrough) + AAC; UpdateStream adds and
// removes destinations live; a dead destination never stops the others. Then a VP8 source
// transcoded to H.264 + AAC into a local fragmented MP4.
import fs from 'node:fs';
import path from 'node:path';
import {
  EgressClient,
  EgressStatus,
  EncodedFileOutput,
  EncodedFileType,
  EncodingOptions,
  StreamOutput,
  StreamProtocol,
  WebhookReceiver,
} from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import type { NodeParticipant } from '../../src/client/node.ts';
import { inProcessWorker, startRtmpSink, type RtmpSink, egressLookups } from '../helpers/egress.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe } from '../helpers/rtpRecorder.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let gw: Gateway;
let worker: EgressWorker;
let egress: EgressClient;
let hooks: WebhookSink;
const sinks: RtmpSink[] = [];

beforeAll(async () => {
  redis = await startRedis();
  hooks = await startWebhookSink();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_WEBHOOK_URLS: hooks.url });
  worker = await inProcessWorker(gw, { ROOMGATE_WEBHOOK_URLS: hooks.url });
  egress = new EgressClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
});

afterAll(async () => {
  await Promise.all(sinks.map((s) => s.stop()));
  await worker?.close();
  await gw?.close();
  await hooks?.close();
  await redis?.stop();
});

async function sink(name: string): Promise<RtmpSink> {
  const s = await startRtmpSink(name);
  sinks.push(s);
  return s;
}

const { info } = egressLookups(() => egress);
const grows = (s: RtmpSink, what: string) => {
  const before = s.size();
  return waitFor(() => (s.size() > before + 20_000 ? true : undefined), 20_000, `${what} to keep receiving`);
};

async function publishAv(p: NodeParticipant, codec: 'H264' | 'VP8') {
  await p.publishFromFfmpeg({ kind: 'video', source: 'camera', codec, input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30'] });
  await p.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
}

describe('participant egress to RTMP', () => {
  it('restreams to many destinations; UpdateStream adds and removes; a dead one leaves the others', async () => {
    const alice = await join(gw.url, 'pr', 'alice');
    try {
      await publishAv(alice, 'H264');
      const a = await sink('a');
      const started = await egress.startParticipantEgress('pr', 'alice', { stream: new StreamOutput({ protocol: StreamProtocol.RTMP, urls: [a.url] }) });
      expect(started.status).toBe(EgressStatus.EGRESS_STARTING);
      expect(JSON.stringify(started.toJson())).not.toContain('secretkey');
      expect(started.streamResults[0]!.url).toMatch(/^rtmp:\/\/127\.0\.0\.1:\d+\/live\/\{key-[0-9a-f]{6}\}$/);
      await waitFor(() => (a.size() > 50_000 ? true : undefined), 20_000, 'sink a to receive');
      expect((await info(started.egressId)).status).toBe(EgressStatus.EGRESS_ACTIVE);

      // Add b: it starts receiving while a goes on.
      const b = await sink('b');
      const afterAdd = await egress.updateStream(started.egressId, [b.url]);
      expect(afterAdd.streamResults).toHaveLength(2);
      await waitFor(() => (b.size() > 50_000 ? true : undefined), 20_000, 'sink b to receive');
      await grows(a, 'sink a');

      // Remove a: its connection ends (the one-shot sink exits); b goes on.
      await egress.updateStream(started.egressId, [], [a.url]);
      await a.ffmpeg.exited;
      await grows(b, 'sink b');

      // A destination that dies: c is killed; b goes on and c shows FAILED with retries.
      const c = await sink('c');
      await egress.updateStream(started.egressId, [c.url]);
      await waitFor(() => (c.size() > 20_000 ? true : undefined), 20_000, 'sink c to receive');
      await c.stop();
      await grows(b, 'sink b after c died');
      const during = await waitFor(async () => {
        const i = await info(started.egressId);
        const cInfo = i.streamResults.find((s) => c.url.startsWith(s.url.replace(/\{key-[0-9a-f]+\}$/, '')) && s.url.endsWith('}') && s.retries > 0);
        return cInfo ? i : undefined;
      }, 20_000, 'c to be retried');
      expect(during.status).toBe(EgressStatus.EGRESS_ACTIVE);

      await egress.stopEgress(started.egressId);
      const ended = await waitFor(async () => {
        const i = await info(started.egressId);
        return i.status === EgressStatus.EGRESS_COMPLETE ? i : undefined;
      }, 30_000, 'COMPLETE');
      expect(ended.streamResults).toHaveLength(3);
      await b.ffmpeg.exited;
      const p = probe(b.file);
      expect(p.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
      expect(p.frames).toBeGreaterThan(30);

      // Webhooks: started, updated (ACTIVE, ENDING), ended — signed, and never with a stream key.
      await waitFor(() => (hooks.received.some((r) => r.body.includes('egress_ended')) ? true : undefined), 10_000, 'egress_ended webhook');
      const receiver = new WebhookReceiver(API_KEY, API_SECRET);
      const events = await Promise.all(hooks.received.filter((r) => r.body.includes(started.egressId)).map((r) => receiver.receive(r.body, r.auth)));
      expect(events.map((e) => e.event)).toEqual(['egress_started', 'egress_updated', 'egress_updated', 'egress_ended']);
      expect(events.map((e) => e.egressInfo?.status)).toEqual([
        EgressStatus.EGRESS_STARTING,
        EgressStatus.EGRESS_ACTIVE,
        EgressStatus.EGRESS_ENDING,
        EgressStatus.EGRESS_COMPLETE,
      ]);
      for (const r of hooks.received) expect(r.body).not.toContain('secretkey');
    } finally {
      await alice.leave();
    }
  });

  it('transcodes a VP8 participant to H.264 + AAC in a local fragmented MP4', async () => {
    const bob = await join(gw.url, 'pf', 'bob');
    try {
      await publishAv(bob, 'VP8');
      const started = await egress.startParticipantEgress(
        'pf',
        'bob',
        { file: new EncodedFileOutput({ fileType: EncodedFileType.MP4, filepath: 'rec/{room_name}-{publisher_identity}' }) },
        { encodingOptions: new EncodingOptions({ width: 426, height: 240, framerate: 15, videoBitrate: 500 }) },
      );
      expect(started.fileResults[0]!.filename).toBe('rec/pf-bob.mp4');
      await waitFor(async () => ((await info(started.egressId)).status === EgressStatus.EGRESS_ACTIVE ? true : undefined), 20_000, 'ACTIVE');
      await new Promise((r) => setTimeout(r, 4000));
      await egress.stopEgress(started.egressId);
      const ended = await waitFor(async () => {
        const i = await info(started.egressId);
        return i.status === EgressStatus.EGRESS_COMPLETE ? i : undefined;
      }, 30_000, 'COMPLETE');
      const f = ended.fileResults[0]!;
      expect(f.location).toBe(path.resolve(gw.config.egress.output_dir, 'rec/pf-bob.mp4'));
      expect(fs.statSync(f.location).size).toBe(Number(f.size));
      const p = probe(f.location);
      expect(p.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
      expect(p.streams.find((s) => s.codec_type === 'video')!.width).toBe(426);
      const recorded = Number(f.duration) / 1e9;
      expect(Math.abs(p.duration - recorded) / recorded).toBeLessThan(0.25);
    } finally {
      await bob.leave();
    }
  });
});
