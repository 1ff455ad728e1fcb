// Publishers shaped like the ones people run (docs: /README.md "OBS and other RTMP encoders"):
// FFmpeg with OBS's default x264 settings (keyframe every 250 frames, B-frames on or off), pushed
// from a clip encoded once per machine so that the test pays the encode once, and GStreamer's two
// RTMP stacks (rtmp2sink, and rtmpsink on librtmp) encoding live.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchFfmpeg, type FfmpegProcess } from '../../src/media/ffmpeg.ts';

export interface ObsShape {
  /** B-frames (OBS default: 2). */
  bframes: boolean;
  /** Frames between keyframes (OBS default: 250, 8.3 s at 30 fps). */
  gop: number;
  seconds: number;
}

export const OBS_DEFAULT: ObsShape = { bframes: true, gop: 250, seconds: 30 };
export const OBS_NO_BFRAMES: ObsShape = { bframes: false, gop: 250, seconds: 30 };

/** An FLV clip with OBS's default encoder settings (1280x720 30 fps, x264 veryfast High 2500 kb/s CBR, AAC 48 kHz 160 kb/s), cached in the temp folder. */
export async function obsClip(shape: ObsShape): Promise<string> {
  const file = path.join(os.tmpdir(), `roomgate-obs-${shape.bframes ? 'bf2' : 'bf0'}-g${shape.gop}-${shape.seconds}s.flv`);
  if (fs.existsSync(file)) return file;
  const tmp = `${file}.${process.pid}.flv`;
  const ff = launchFfmpeg([
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(shape.seconds),
    '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-pix_fmt', 'yuv420p',
    '-b:v', '2500k', '-maxrate', '2500k', '-bufsize', '5000k',
    '-g', String(shape.gop), '-keyint_min', String(shape.gop), '-sc_threshold', '0', '-bf', shape.bframes ? '2' : '0',
    '-c:a', 'aac', '-b:a', '160k', '-ar', '48000', '-ac', '2',
    '-f', 'flv', '-y', tmp,
  ]);
  const code = await ff.exited;
  if (code !== 0) throw new Error(`could not encode the OBS-shaped clip: ${ff.stderrTail()}`);
  fs.renameSync(tmp, file);
  return file;
}

/** Pushes a clip in real time (-re, -c copy) to an RTMP URL, like an encoder streaming live. */
export function pushClip(clip: string, url: string): FfmpegProcess {
  return launchFfmpeg(['-re', '-i', clip, '-c', 'copy', '-f', 'flv', url]);
}

export interface GstPublisher {
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * GStreamer encoding live (x264enc veryfast, keyframe every 250 frames; avenc_aac) into flvmux
 * and one of its RTMP sinks. Its video starts a moment after its audio (x264's lookahead).
 */
export function gstPublish(url: string, sink: 'rtmp2sink' | 'rtmpsink', o: { width: number; height: number; bitrateKbps?: number } = { width: 1280, height: 720 }): GstPublisher {
  const pipeline = [
    'videotestsrc', 'is-live=true', 'pattern=smpte', '!', `video/x-raw,format=I420,width=${o.width},height=${o.height},framerate=30/1`, '!',
    'x264enc', 'speed-preset=veryfast', 'key-int-max=250', `bitrate=${o.bitrateKbps ?? 2500}`, '!', 'h264parse', '!', 'queue', '!', 'm.',
    'audiotestsrc', 'is-live=true', 'wave=sine', '!', 'audio/x-raw,rate=48000,channels=2', '!', 'audioconvert', '!', 'avenc_aac', 'bitrate=160000', '!', 'aacparse', '!', 'queue', '!', 'm.',
    'flvmux', 'name=m', 'streamable=true', '!', sink, `location=${url}${sink === 'rtmpsink' ? ' live=1' : ''}`,
  ];
  const child = spawn('gst-launch-1.0', ['-e', '-q', ...pipeline], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    process: child,
    exited,
    stderr: () => err,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** An FFmpeg 1080p encode to nowhere: one CPU hog, as a busy gateway has beside its recordings. */
export function cpuHog(): FfmpegProcess {
  return launchFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=30', '-c:v', 'libx264', '-preset', 'medium', '-f', 'null', '-']);
}
