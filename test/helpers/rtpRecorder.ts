// Records what a room's Producers carry, the way a subscriber gets it: a mediasoup PlainTransport
// consumer per producer sends RTP to FFmpeg, which reads an SDP and writes a file for ffprobe.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { types } from 'mediasoup';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { freePort } from './net.ts';

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
  const media: string[] = [];
  const consumers: types.Consumer[] = [];
  const transports: types.PlainTransport[] = [];
  try {
    for (const producer of producers) {
      const port = await freePort();
      const t = await router.createPlainTransport({ listenIp: { ip: '127.0.0.1' }, rtcpMux: false, comedia: false });
      transports.push(t);
      await t.connect({ ip: '127.0.0.1', port, rtcpPort: port + 1 });
      const c = await t.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities, paused: true });
      consumers.push(c);
      const codec = c.rtpParameters.codecs[0]!;
      const [, name] = codec.mimeType.split('/');
      const fmtp = Object.entries(codec.parameters ?? {}).map(([k, v]) => `${k}=${v}`).join(';');
      media.push(
        `m=${c.kind} ${port} RTP/AVP ${codec.payloadType}`,
        `a=rtpmap:${codec.payloadType} ${name}/${codec.clockRate}${codec.channels ? `/${codec.channels}` : ''}`,
        ...(fmtp ? [`a=fmtp:${codec.payloadType} ${fmtp}`] : []),
      );
    }
    const sdp = ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=record', 'c=IN IP4 127.0.0.1', 't=0 0', ...media, ''].join('\r\n');
    const sdpFile = path.join(dir, 'in.sdp');
    fs.writeFileSync(sdpFile, sdp);
    const ff = launchFfmpeg(['-protocol_whitelist', 'file,udp,rtp', '-i', sdpFile, '-t', String(seconds), '-c', 'copy', '-y', file]);
    await new Promise((r) => setTimeout(r, 500)); // FFmpeg listens before the first packet is sent
    for (const c of consumers) {
      await c.resume();
      if (c.kind === 'video') await c.requestKeyFrame();
    }
    const timer = setTimeout(() => void ff.stop(), (seconds + 15) * 1000);
    await ff.exited;
    clearTimeout(timer);
  } finally {
    for (const t of transports) t.close();
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
