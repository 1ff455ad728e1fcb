// What real publishers send, generated at test time (nothing binary in the repo): OBS's defaults, OBS
// with B-frames off at its default 8.3 s keyframes and its WebRTC-friendly 2 s variant, GStreamer's
// two RTMP stacks, a 1080p 6 Mb/s stream, audio-only, video-only (all over RTMP), and headless
// Chromium over WHIP. FFmpeg shapes are encoded once per machine into a clip in the temp folder and
// pushed with `-re -c copy`, so a test pays for the encode once and the publisher costs almost
// nothing after; GStreamer encodes live, as it would.
// Also the measures the publisher matrix and bench apply to every output: a full decode and the
// share of wall time the output covers after the source's first keyframe.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchFfmpeg, type FfmpegProcess } from '../../src/media/ffmpeg.ts';
import { gstPublish } from './publishers.ts';

export type ShapeName = 'obs-default' | 'obs-nob-2s' | 'obs-nob-long' | 'gst-rtmp2sink' | 'gst-rtmpsink' | '1080p-6m' | 'audio-only' | 'video-only' | 'browser-whip';

export interface PublisherShape {
  name: ShapeName;
  description: string;
  transport: 'rtmp' | 'whip';
  video?: { width: number; height: number; fps: number; bframes: boolean };
  /** Seconds between the source's keyframes; 0 for a source that answers keyframe requests. */
  keyframeIntervalS: number;
  audio: boolean;
}

const SINE = ['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'];
const AAC = ['-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-ac', '2'];
const testsrc = (w: number, h: number) => ['-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=30`];
/** x264 as OBS drives it: CBR (nal-hrd), High, veryfast, keyframes every `keyint` frames. */
const obsX264 = (kbps: number, keyint: number, bframes: boolean) => [
  '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-pix_fmt', 'yuv420p',
  '-b:v', `${kbps}k`, '-minrate', `${kbps}k`, '-maxrate', `${kbps}k`, '-bufsize', `${kbps}k`,
  '-x264-params', `nal-hrd=cbr:keyint=${keyint}${bframes ? '' : ':bframes=0'}`,
];

interface ClipRecipe {
  seconds: number;
  args: string[];
}

const CLIP_SECONDS = 30;

const shapes: Record<ShapeName, PublisherShape & { clip?: ClipRecipe }> = {
  'obs-default': {
    name: 'obs-default',
    description: 'OBS defaults: 1280x720 30 fps, x264 veryfast High CBR 2500k, keyframe every 250 frames, B-frames, AAC-LC 48 kHz',
    transport: 'rtmp',
    video: { width: 1280, height: 720, fps: 30, bframes: true },
    keyframeIntervalS: 250 / 30,
    audio: true,
    clip: { seconds: CLIP_SECONDS, args: [...testsrc(1280, 720), ...SINE, ...obsX264(2500, 250, true), ...AAC] },
  },
  'obs-nob-2s': {
    name: 'obs-nob-2s',
    description: 'OBS, B-frames off, keyframe every 2 s: 1280x720 30 fps, x264 veryfast High CBR 2500k, AAC-LC 48 kHz',
    transport: 'rtmp',
    video: { width: 1280, height: 720, fps: 30, bframes: false },
    keyframeIntervalS: 2,
    audio: true,
    clip: { seconds: CLIP_SECONDS, args: [...testsrc(1280, 720), ...SINE, ...obsX264(2500, 60, false), ...AAC] },
  },
  'obs-nob-long': {
    name: 'obs-nob-long',
    description: "OBS, B-frames off, keyframe interval left at its default (250 frames, 8.3 s): passed through, the source cannot answer a keyframe request",
    transport: 'rtmp',
    video: { width: 1280, height: 720, fps: 30, bframes: false },
    keyframeIntervalS: 250 / 30,
    audio: true,
    clip: { seconds: CLIP_SECONDS, args: [...testsrc(1280, 720), ...SINE, ...obsX264(2500, 250, false), ...AAC] },
  },
  'gst-rtmp2sink': {
    name: 'gst-rtmp2sink',
    description: 'GStreamer x264enc speed-preset=veryfast (x264 defaults: keyframe every 250 frames, B-frames) + avenc_aac ! flvmux ! rtmp2sink, 640x360 30 fps',
    transport: 'rtmp',
    video: { width: 640, height: 360, fps: 30, bframes: true },
    keyframeIntervalS: 250 / 30,
    audio: true,
  },
  'gst-rtmpsink': {
    name: 'gst-rtmpsink',
    description: 'GStreamer x264enc speed-preset=veryfast + avenc_aac ! flvmux ! rtmpsink (librtmp), 640x360 30 fps',
    transport: 'rtmp',
    video: { width: 640, height: 360, fps: 30, bframes: true },
    keyframeIntervalS: 250 / 30,
    audio: true,
  },
  '1080p-6m': {
    name: '1080p-6m',
    description: '1920x1080 30 fps, x264 veryfast High CBR 6000k, keyframe every 2 s, B-frames, AAC 48 kHz',
    transport: 'rtmp',
    video: { width: 1920, height: 1080, fps: 30, bframes: true },
    keyframeIntervalS: 2,
    audio: true,
    clip: { seconds: CLIP_SECONDS, args: [...testsrc(1920, 1080), ...SINE, ...obsX264(6000, 60, true), ...AAC] },
  },
  'audio-only': {
    name: 'audio-only',
    description: 'audio only: AAC-LC 48 kHz stereo 128k over RTMP',
    transport: 'rtmp',
    keyframeIntervalS: 0,
    audio: true,
    clip: { seconds: CLIP_SECONDS, args: [...SINE, ...AAC] },
  },
  'video-only': {
    name: 'video-only',
    description: 'video only: 1280x720 30 fps x264 veryfast CBR 2500k, keyframe every 2 s, no B-frames',
    transport: 'rtmp',
    video: { width: 1280, height: 720, fps: 30, bframes: false },
    keyframeIntervalS: 2,
    audio: false,
    clip: { seconds: CLIP_SECONDS, args: [...testsrc(1280, 720), ...obsX264(2500, 60, false)] },
  },
  'browser-whip': {
    name: 'browser-whip',
    description: 'headless Chromium over WHIP: fake camera 640x360 30 fps (VP8, keyframes on request) + Opus',
    transport: 'whip',
    video: { width: 640, height: 360, fps: 30, bframes: false },
    keyframeIntervalS: 0,
    audio: true,
  },
};

export const PUBLISHER_SHAPES: readonly PublisherShape[] = Object.values(shapes);
export const shape = (name: ShapeName): PublisherShape => shapes[name];

/** The clip for an FFmpeg shape, encoded once per machine (cached by its recipe in the temp folder). */
async function clipFor(recipe: ClipRecipe, name: string): Promise<{ file: string; keyframes: number[] }> {
  const hash = crypto.createHash('sha1').update(JSON.stringify(recipe)).digest('hex').slice(0, 10);
  const file = path.join(os.tmpdir(), `roomgate-corpus-${name}-${hash}.flv`);
  if (!fs.existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp.flv`;
    const ff = launchFfmpeg([...recipe.args, '-t', String(recipe.seconds), '-f', 'flv', '-y', tmp]);
    const code = await ff.exited;
    if (code !== 0) throw new Error(`encoding the ${name} clip failed (${code}): ${ff.stderrTail()}`);
    fs.renameSync(tmp, file);
  }
  return { file, keyframes: keyframeTimes(file) };
}

/** Presentation times (s) of the video keyframes of a file, sorted. */
export function keyframeTimes(file: string): number[] {
  const res = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,flags', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  return res.stdout
    .split('\n')
    .filter((l) => l.includes('K'))
    .map((l) => Number(l.split(',')[0]))
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
}

export interface RunningPublisher {
  shape: PublisherShape;
  /** Wall clock (ms) when media time 0 left the publisher. */
  startedAt: number;
  /** Wall clock (ms) of the source's first keyframe at or after wall clock `t` (ms). */
  nextKeyframe(t: number): number;
  stop(): Promise<void>;
}

/** Keyframe schedule of a source looping a clip of `period` s with keyframes at `times`. */
function schedule(startedAt: number, times: number[], period: number) {
  return (t: number): number => {
    if (times.length === 0) return t;
    const since = Math.max(0, (t - startedAt) / 1000);
    const loop = Math.floor(since / period);
    for (let l = loop; l <= loop + 1; l++) {
      for (const k of times) {
        const at = l * period + k;
        if (at >= since) return startedAt + at * 1000;
      }
    }
    return t;
  };
}

/** Starts an RTMP publisher of `shape` pushing to `url` (rtmp://127.0.0.1:port/live/<stream key>). */
export async function startRtmpPublisher(s: PublisherShape, url: string): Promise<RunningPublisher> {
  const recipe = shapes[s.name].clip;
  if (recipe) {
    const clip = await clipFor(recipe, s.name);
    const ff: FfmpegProcess = launchFfmpeg(['-re', '-stream_loop', '-1', '-i', clip.file, '-c', 'copy', '-f', 'flv', url], { secrets: [url] });
    const startedAt = Date.now();
    const next = s.video ? schedule(startedAt, clip.keyframes, recipe.seconds) : (t: number) => t;
    return { shape: s, startedAt, nextKeyframe: next, stop: async () => void (await ff.stop(3000)) };
  }
  if (s.name === 'gst-rtmp2sink' || s.name === 'gst-rtmpsink') return startGstreamer(s, url);
  throw new Error(`${s.name} is not an RTMP shape`);
}

function startGstreamer(s: PublisherShape, url: string): RunningPublisher {
  const v = s.video!;
  // The one GStreamer publisher of the tests (test/helpers/publishers.ts): librtmp's options such as
  // `live=1` belong inside rtmpsink's location, which a pipeline written here once got wrong (the
  // shape never published).
  const pub = gstPublish(url, s.name === 'gst-rtmp2sink' ? 'rtmp2sink' : 'rtmpsink', { width: v.width, height: v.height, bitrateKbps: 1000 });
  const startedAt = Date.now();
  const period = 250 / v.fps;
  return {
    shape: s,
    startedAt,
    nextKeyframe: (t) => startedAt + Math.ceil(Math.max(0, (t - startedAt) / 1000) / period) * period * 1000,
    async stop() {
      await pub.stop();
      if (process.env.TEST_LOG_LEVEL && pub.stderr()) console.error(`[${s.name}] ${pub.stderr()}`);
    },
  };
}

/** What a WHIP-publishing page does: fake camera + mic, one non-trickle offer, one POST. */
export async function publishFromPage(page: Page, endpoint: string, streamKey: string): Promise<{ status: number; location: string | null; detail: string }> {
  return page.evaluate(
    async ({ endpoint, streamKey }) => {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360, frameRate: 30 }, audio: true });
      const pc = new RTCPeerConnection();
      for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise<void>((resolve) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
        setTimeout(resolve, 2000);
      });
      const res = await fetch(endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${streamKey}` },
        body: pc.localDescription!.sdp,
      });
      const text = await res.text();
      if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: text });
      (window as unknown as { whipPc: RTCPeerConnection }).whipPc = pc;
      return { status: res.status, location: res.headers.get('Location'), detail: res.status === 201 ? '' : text };
    },
    { endpoint, streamKey },
  );
}

/** Headless Chromium publishing over WHIP into `ingressUrl` (the page is opened on the gateway's origin). */
export async function startWhipPublisher(browser: Browser, gatewayUrl: string, ingressUrl: string, streamKey: string): Promise<RunningPublisher> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${gatewayUrl}/play`);
  const pub = await publishFromPage(page, ingressUrl, streamKey);
  if (pub.status !== 201) throw new Error(`WHIP publish answered ${pub.status}: ${pub.detail}`);
  const startedAt = Date.now();
  return {
    shape: shapes['browser-whip'],
    startedAt,
    nextKeyframe: (t) => t, // Chromium answers keyframe requests
    async stop() {
      await page.evaluate(async (loc) => void (await fetch(loc!, { method: 'DELETE' })), pub.location).catch(() => undefined);
      await context.close();
    },
  };
}

export interface OutputMeasure {
  file: string;
  codecs: string[];
  width?: number;
  /** Seconds of real picture (or, with no video, audio) in the output. */
  content: number;
  /** content ÷ the wall time from the source's first keyframe after the start to the stop. */
  coverage: number;
  /** The full decode's exit status and its last error lines. */
  decodeOk: boolean;
  decodeErrors: string;
}

/**
 * Video packets below this size carry no picture change: a composite that only draws a name card
 * writes ≈ 90-byte frames, and so does an encoder repeating a picture to keep its frame rate; a new
 * picture of any source here takes more.
 */
const PICTURE_BYTES = 300;

/**
 * ffprobe + a full decode of `file`, and how much of the window [`from`, `to`] (wall ms) its media
 * covers. Video counts only frames that carry a picture (see PICTURE_BYTES); audio-only outputs
 * count their audio span.
 */
export function measureOutput(file: string, from: number, to: number): OutputMeasure {
  const streams = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name,width', '-of', 'json', file], { encoding: 'utf8' });
  // ffprobe prints `{}` for a file it finds no stream in.
  const parsed = JSON.parse(streams.stdout || '{}') as { streams?: { codec_type: string; codec_name: string; width?: number }[] };
  parsed.streams ??= [];
  const decode = spawnSync('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, '-f', 'null', '-'], { encoding: 'utf8' });
  const video = parsed.streams.find((s) => s.codec_type === 'video');
  const packets = spawnSync('ffprobe', ['-v', 'error', '-select_streams', video ? 'v:0' : 'a:0', '-show_entries', 'packet=pts_time,size', '-of', 'csv=p=0', file], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const rows = packets.stdout
    .split('\n')
    .map((l) => l.split(',').map(Number) as [number, number])
    .filter(([t, size]) => Number.isFinite(t) && Number.isFinite(size))
    .sort((a, b) => a[0] - b[0]);
  // Time covered by pictures: each new picture counts until the next one, up to 0.5 s. Repeated
  // pictures (an encoder's fps filter filling a slower source: ≈ 84-byte frames, like a name card's)
  // neither count nor break the interval, so a 20 fps camera in a 30 fps recording covers its time.
  const pictures = video ? rows.filter(([, size]) => size >= PICTURE_BYTES) : rows;
  let content = 0;
  for (let i = 0; i < pictures.length - 1; i++) content += Math.min(0.5, pictures[i + 1]![0] - pictures[i]![0]);
  const window = Math.max(0.001, (to - from) / 1000);
  return {
    file,
    codecs: parsed.streams.map((s) => s.codec_name).sort(),
    ...(video?.width ? { width: video.width } : {}),
    content,
    coverage: content / window,
    decodeOk: decode.status === 0 && parsed.streams.length > 0,
    decodeErrors: decode.stderr.split('\n').slice(-5).join('\n'),
  };
}

/** Encodes (once per machine) the clips of the FFmpeg shapes, e.g. before a bench times anything. */
export async function prepareCorpus(names: ShapeName[] = PUBLISHER_SHAPES.map((s) => s.name)): Promise<void> {
  for (const n of names) {
    const recipe = shapes[n].clip;
    if (recipe) await clipFor(recipe, n);
  }
}
