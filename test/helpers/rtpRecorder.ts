// Records what a room's Producers carry, the way a subscriber gets it: the egress media path
// (src/media/rtpSend.ts consumers, an SDP from src/media/sdp.ts) into FFmpeg, which writes a file for ffprobe.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { types } from 'mediasoup';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { openRtpSend, type RtpSend } from '../../src/media/rtpSend.ts';
import { writeRtpInputSdp, type RtpInputStream } from '../../src/media/sdp.ts';
import { freePort, waitForBound } from './net.ts';
export interface ProbedStream {
  codec_type: string;
  codec_name: string;
  width?: number;
  height?: number;
  has_b_frames?: number;
  channels?: number;
  sample_rate?: string;
}

export async function recordProducers(router: types.Router, producers: types.Producer[], seconds: number): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-rec-'));
  const file = path.join(dir, 'out.mkv');
  const sends: RtpSend[] = [];
  const streams: RtpInputStream[] = [];
  try {
    for (const producer of producers) {
      const port = await freePort();
      const send = await openRtpSend(router, producer);
      sends.push(send);
      streams.push({ ...send.codec, port, rtcpPort: port + 1 });
    }
    const sdpFile = path.join(dir, 'in.sdp');
    fs.writeFileSync(sdpFile, writeRtpInputSdp(streams));
    const ff = launchFfmpeg(['-protocol_whitelist', 'file,udp,rtp', '-i', sdpFile, '-t', String(seconds), '-c', 'copy', '-y', file]);
    // The first packets must find FFmpeg's sockets bound, or they are lost (and with them a keyframe).
    for (const s of streams) await waitForBound(s.port, 'udp', ff);
    for (const [i, send] of sends.entries()) await send.start({ ip: '127.0.0.1', port: streams[i]!.port, rtcpPort: streams[i]!.rtcpPort });
    const timer = setTimeout(() => {
      ff.stop().catch((err: unknown) => console.error('rtpRecorder: stopping the recorder FFmpeg failed', err));
    }, (seconds + 15) * 1000);
    await ff.exited;
    clearTimeout(timer);
  } finally {
    for (const s of sends) s.close();
  }
  return file;
}
export function probe(file: string): { streams: ProbedStream[]; duration: number; frames: number } {
  const res = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`ffprobe failed: ${res.stderr}`);
  const out = JSON.parse(res.stdout) as { streams: (ProbedStream & { nb_read_frames?: string })[]; format: { duration?: string } };
  const video = out.streams.find((s) => s.codec_type === 'video');
  return { streams: out.streams, duration: Number(out.format.duration ?? 0), frames: Number(video?.nb_read_frames ?? 0) };
}
