// RTMP stacks other than FFmpeg's: GStreamer's rtmp2sink and rtmpsink (librtmp), encoding live with
// x264enc (keyframe every 250 frames, B-frames) and avenc_aac. Their video starts a moment after
// their audio; the ingress participant must still get both tracks (before: audio only, 3 of 3
// runs), and the state says what the stream carries from the moment it turns PUBLISHING.
import { IngressState_Status, TrackType } from '@livekit/protocol';
import { IngressClient, IngressInput, type IngressInfo } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { gstPublish, type GstPublisher } from '../helpers/publishers.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let gw: Gateway;
let hooks: WebhookSink;
let ingress: IngressClient;
const publishers: GstPublisher[] = [];

beforeAll(async () => {
  [redis, hooks] = await Promise.all([startRedis(), startWebhookSink()]);
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_RTMP_ENABLED: 'true', ROOMGATE_RTMP_PORT: String(await freePort()), ROOMGATE_WEBHOOK_URLS: hooks.url });
  ingress = new IngressClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  await Promise.all(publishers.map((p) => p.stop()));
  await gw?.close();
  await hooks?.close();
  await redis?.stop();
});

describe.each(['rtmp2sink', 'rtmpsink'] as const)('GStreamer %s publisher', (sink) => {
  it('becomes a participant with video and audio', async () => {
    const room = `gst-${sink}`;
    const info = await ingress.createIngress(IngressInput.RTMP_INPUT, { roomName: room, participantIdentity: sink, participantName: sink });
    const pub = gstPublish(`rtmp://127.0.0.1:${gw.rtmpPort}/live/${info.streamKey}`, sink, { width: 640, height: 360 });
    publishers.push(pub);
    // A publisher that exits fails the wait at once; either failure says what GStreamer printed and
    // the last state the gateway reported.
    let last: IngressInfo | undefined;
    const started = await waitFor(async () => {
      if (pub.process.exitCode !== null || pub.process.signalCode !== null) throw new Error(`gst-launch exited (${pub.process.exitCode ?? pub.process.signalCode}) before PUBLISHING`);
      const [i] = await ingress.listIngress({ ingressId: info.ingressId });
      last = i;
      return i?.state?.status === IngressState_Status.ENDPOINT_PUBLISHING ? i : undefined;
    }, 60_000, `${sink} PUBLISHING`).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last state ${JSON.stringify(last?.state?.toJson() ?? null)}; GStreamer: ${pub.stderr().trim() || '(nothing)'}`);
    });
    // Filled at once from the probe (LiveKit fills them when publishing starts).
    expect(started.state!.audio?.mimeType).toBe('audio/aac');
    // Both tracks, in the room and in the state, once the video has come (restart or not).
    const both = await waitFor(async () => {
      const [i] = await ingress.listIngress({ ingressId: info.ingressId });
      const types = (i?.state?.tracks ?? []).map((t) => t.type).sort();
      return types.length === 2 ? (i as IngressInfo) : undefined;
    }, 30_000, `${sink}: video and audio tracks`);
    expect(both.state!.tracks.map((t) => t.type).sort()).toEqual([TrackType.AUDIO, TrackType.VIDEO]);
    expect(both.state!.video?.width).toBe(640);
    const live = gw.rooms.liveRoom(room)!.participant(sink);
    await waitFor(() => (live.tracks.length === 2 ? true : undefined), 10_000, 'two published tracks');
    expect(live.tracks.map((t) => t.producer.kind).sort()).toEqual(['audio', 'video']);
    // The video flows into the room (packets counted by mediasoup). The track is looked up at each
    // poll: B-frames seen after a passthrough start replace it with a re-encoded one (RtmpPublish
    // replans), and the old producer may close between the lookup and getStats.
    await waitFor(
      async () => {
        const video = live.tracks.find((t) => t.producer.kind === 'video' && !t.producer.closed);
        const stats = video ? await video.producer.getStats().catch(() => undefined) : undefined;
        return stats?.some((s) => s.packetCount > 100) ? true : undefined;
      },
      20_000,
      'video packets',
    );
    // One ingress_started for the publish, whatever happened to the tracks after.
    const startedHooks = hooks.received.filter((r) => r.body.includes('ingress_started') && r.body.includes(info.ingressId));
    expect(startedHooks).toHaveLength(1);
    await pub.stop();
  }, 120_000);
});
