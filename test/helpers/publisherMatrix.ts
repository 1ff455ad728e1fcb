// The publisher matrix's rig: one gateway with RTMP on, an in-process egress worker, the real SDK
// clients, optionally headless Chromium; and its cells: publish a corpus shape, record it through an
// egress kind, measure a viewer's first frame. Used by the covering subset in `npm test`
// (test/integration/publishers.test.ts), the full matrix (`npm run test:matrix`) and the bench.
import path from 'node:path';
import {
  DirectFileOutput,
  EgressClient,
  EgressStatus,
  EncodedFileOutput,
  EncodingOptions,
  IngressClient,
  IngressInput,
  RoomServiceClient,
  SegmentedFileOutput,
  StreamOutput,
  TrackType,
  type EgressInfo,
} from 'livekit-server-sdk';
import type { Browser } from 'playwright-core';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import { sleep } from '../../src/time.ts';
import { inProcessWorker, startRtmpSink, type RtmpSink } from './egress.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from './gateway.ts';
import { freePort, waitFor } from './net.ts';
import { joinToken } from './participants.ts';
import { measureOutput, startRtmpPublisher, startWhipPublisher, type OutputMeasure, type PublisherShape, type RunningPublisher } from './publisherCorpus.ts';

export interface Rig {
  gw: Gateway;
  worker: EgressWorker;
  egress: EgressClient;
  ingress: IngressClient;
  rooms: RoomServiceClient;
  browser?: Browser;
  close(): Promise<void>;
}

export async function startRig(redisUrl: string, browser?: Browser): Promise<Rig> {
  const gw = await startTestGateway({ ROOMGATE_REDIS_URL: redisUrl, ROOMGATE_RTMP_ENABLED: 'true', ROOMGATE_RTMP_PORT: String(await freePort()), ROOMGATE_EGRESS_MAX_CPU: '16' });
  const worker = await inProcessWorker(gw, { ROOMGATE_EGRESS_MAX_CPU: '16' });
  return {
    gw,
    worker,
    egress: new EgressClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS),
    ingress: new IngressClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS),
    rooms: new RoomServiceClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS),
    ...(browser ? { browser } : {}),
    async close() {
      await worker.close();
      await gw.close();
    },
  };
}

export interface Published {
  room: string;
  identity: string;
  publisher: RunningPublisher;
  video?: string;
  audio?: string;
  stop(): Promise<void>;
}

/**
 * Creates an ingress for `shape` in `room`, starts the publisher and waits until its participant
 * carries every track the shape sends; fails naming what arrived when one never does.
 */
export async function publishShape(rig: Rig, shape: PublisherShape, room: string): Promise<Published> {
  const identity = `${shape.name}-pub`;
  const isWhip = shape.transport === 'whip';
  const info = await rig.ingress.createIngress(isWhip ? IngressInput.WHIP_INPUT : IngressInput.RTMP_INPUT, { roomName: room, participantIdentity: identity, name: shape.name });
  let publisher: RunningPublisher;
  if (isWhip) {
    if (!rig.browser) throw new Error('the WHIP shape needs the rig started with a browser');
    publisher = await startWhipPublisher(rig.browser, rig.gw.url, info.url, info.streamKey);
  } else {
    publisher = await startRtmpPublisher(shape, `rtmp://127.0.0.1:${rig.gw.rtmpPort}/live/${info.streamKey}`);
  }
  const stop = async () => {
    await publisher.stop();
    await rig.ingress.deleteIngress(info.ingressId).catch(() => undefined);
  };
  try {
    let seen = 'no participant';
    const tracks = await waitFor(
      async () => {
        const p = (await rig.rooms.listParticipants(room).catch(() => [])).find((x) => x.identity === identity);
        if (!p) return undefined;
        const video = p.tracks.find((t) => t.type === TrackType.VIDEO)?.sid;
        const audio = p.tracks.find((t) => t.type === TrackType.AUDIO)?.sid;
        seen = `video ${video ?? 'none'}, audio ${audio ?? 'none'}`;
        return (!shape.video || video) && (!shape.audio || audio) ? { video, audio } : undefined;
      },
      // The first tracks wait for the source's first keyframe (up to a GOP) and the ingress probe.
      15_000 + shape.keyframeIntervalS * 1000,
      `${shape.name}: the participant to carry ${[shape.video ? 'video' : '', shape.audio ? 'audio' : ''].filter(Boolean).join(' and ')}`,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)} (it has ${seen})`);
    });
    return { room, identity, publisher, ...(tracks.video ? { video: tracks.video } : {}), ...(tracks.audio ? { audio: tracks.audio } : {}), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export type EgressKind = 'track' | 'participant' | 'track-composite' | 'room-composite';
export const EGRESS_KINDS: readonly EgressKind[] = ['track', 'participant', 'track-composite', 'room-composite'];

export interface CellResult {
  kind: EgressKind;
  status: string;
  error?: string;
  /** StartEgress was called at this wall time; the source's next keyframe came at `keyframeAt`. */
  startedAt: number;
  keyframeAt: number;
  stoppedAt: number;
  file?: OutputMeasure;
  rtmp?: OutputMeasure;
  hls?: OutputMeasure;
}

const small = new EncodingOptions({ width: 640, height: 360, framerate: 15, videoBitrate: 800 });

async function ended(rig: Rig, id: string, ms: number): Promise<EgressInfo> {
  return waitFor(async () => {
    const i = (await rig.egress.listEgress({ egressId: id }))[0];
    return i && i.status >= EgressStatus.EGRESS_COMPLETE ? i : undefined;
  }, ms, `egress ${id} to end`);
}

/**
 * Records `pub` for `seconds` through one egress kind: track → file; participant, track composite
 * and room composite → file + RTMP; the room composite also writes HLS. Measures every output
 * against the wall time from the source's first keyframe after StartEgress to StopEgress.
 */
export async function recordCell(rig: Rig, pub: Published, kind: EgressKind, seconds: number): Promise<CellResult> {
  const tag = `${pub.publisher.shape.name}-${kind}`;
  let sink: RtmpSink | undefined;
  try {
    const startedAt = Date.now();
    let info: EgressInfo;
    if (kind === 'track') {
      info = await rig.egress.startTrackEgress(pub.room, new DirectFileOutput({ filepath: `matrix/${tag}-{track_id}` }), (pub.video ?? pub.audio)!);
    } else {
      sink = await startRtmpSink(tag);
      const file = new EncodedFileOutput({ filepath: `matrix/${tag}` });
      const stream = new StreamOutput({ urls: [sink.url] });
      if (kind === 'participant') {
        info = await rig.egress.startParticipantEgress(pub.room, pub.identity, { file, stream });
      } else if (kind === 'track-composite') {
        info = await rig.egress.startTrackCompositeEgress(pub.room, { file, stream }, {
          ...(pub.video ? { videoTrackId: pub.video } : {}),
          ...(pub.audio ? { audioTrackId: pub.audio } : {}),
          encodingOptions: small,
        });
      } else {
        const segments = new SegmentedFileOutput({ playlistName: `matrix/${tag}/index.m3u8`, segmentDuration: 2 });
        info = await rig.egress.startRoomCompositeEgress(pub.room, { file, stream, segments }, { layout: 'grid', encodingOptions: small, ...(pub.video ? {} : { audioOnly: true }) });
      }
    }
    const keyframeAt = pub.publisher.nextKeyframe(startedAt);
    await sleep(seconds * 1000);
    const stoppedAt = Date.now();
    await rig.egress.stopEgress(info.egressId).catch(() => undefined);
    const done = await ended(rig, info.egressId, 40_000);
    const from = Math.max(startedAt, keyframeAt);
    const result: CellResult = { kind, status: EgressStatus[done.status], startedAt, keyframeAt, stoppedAt, ...(done.error ? { error: done.error } : {}) };
    const f = done.fileResults[0];
    if (f?.location) result.file = measureOutput(f.location, from, stoppedAt);
    if (sink) {
      await sink.stop();
      if (sink.size() > 0) result.rtmp = measureOutput(sink.file, from, stoppedAt);
    }
    const seg = done.segmentResults[0];
    if (seg) result.hls = measureOutput(seg.playlistLocation || path.resolve(rig.gw.config.egress.output_dir, seg.playlistName), from, stoppedAt);
    return result;
  } finally {
    await sink?.stop();
  }
}

/**
 * A new viewer in headless Chromium: 'sdk' joins the room through the demo page (no camera or
 * microphone), 'whep' plays the participant on /play. Returns ms from the join to its first
 * decoded video frame.
 */
export async function viewerFirstFrame(rig: Rig, pub: Published, via: 'sdk' | 'whep', timeoutMs: number): Promise<number> {
  if (!rig.browser) throw new Error('viewers need the rig started with a browser');
  const context = await rig.browser.newContext();
  try {
    const page = await context.newPage();
    const viewer = `viewer-${via}-${Math.random().toString(36).slice(2, 6)}`;
    const token = await joinToken(pub.room, viewer, { canSubscribe: true, canPublish: false });
    if (via === 'sdk') {
      await page.goto(`${rig.gw.url}/?room=${pub.room}&identity=${viewer}&token=${token}`);
      await page.evaluate(() => {
        for (const id of ['cam', 'mic']) (document.getElementById(id) as HTMLInputElement).checked = false;
      });
    }
    const t0 = Date.now();
    if (via === 'sdk') {
      await page.evaluate(() => (document.getElementById('join') as HTMLFormElement).requestSubmit());
    } else {
      await page.goto(`${rig.gw.url}/play?room=${pub.room}&identity=${pub.identity}&token=${token}`);
    }
    // Polled in the page, so the figure does not include a round trip per poll.
    await page.waitForFunction(
      () => {
        const videos = [...document.querySelectorAll('video')];
        const w = window as unknown as { firstFrameAt?: number };
        // The page's only playing video is the publisher's (the viewer sends none).
        if (videos.some((v) => v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0)) w.firstFrameAt ??= Date.now();
        return w.firstFrameAt;
      },
      undefined,
      { timeout: timeoutMs, polling: 20 },
    );
    const at = await page.evaluate(() => (window as unknown as { firstFrameAt: number }).firstFrameAt);
    return at - t0;
  } finally {
    await context.close();
  }
}
