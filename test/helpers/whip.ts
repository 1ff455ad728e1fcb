// A WHIP publisher in Node on werift: sendonly transceivers, one non-trickle offer POSTed with
// fetch, media from FFmpeg RTP (through the one launcher). Also an RTP → FFmpeg decoder that
// proves received media decodes.
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  MediaStreamTrack,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  useAbsSendTime,
  useSdesMid,
  useTransportWideCC,
  type RtpPacket,
} from 'werift';
import { launchFfmpeg, type FfmpegProcess } from '../../src/media/ffmpeg.ts';

export type WhipVideoCodec = 'VP8' | 'H264';
const FEEDBACK = [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }, { type: 'transport-cc' }];

export interface WhipPublisher {
  pc: RTCPeerConnection;
  status: number;
  location: string;
  etag: string | null;
  links: string | null;
  answer: string;
  /** The video encoder, when `videoStdin` was asked for. */
  videoFeed?: FfmpegProcess;
  /** Ends the session with DELETE and stops FFmpeg. */
  stop(): Promise<Response>;
  close(): Promise<void>;
}

function encodeArgs(kind: 'audio' | 'video', codec: WhipVideoCodec): string[] {
  if (kind === 'audio') return ['-map', '0:a:0', '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '64k', '-payload_type', '111'];
  return codec === 'H264'
    ? ['-map', '0:v:0', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-bf', '0', '-g', '30', '-payload_type', '102']
    : // One thread, as in src/client/node.ts: a paced multi-threaded libvpx spins between frames.
      ['-map', '0:v:0', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-threads', '1', '-b:v', '600k', '-g', '30', '-payload_type', '96'];
}

/** Sends FFmpeg's RTP into a werift track (werift rewrites SSRC and payload type to the negotiated ones). */
async function feed(
  track: MediaStreamTrack,
  kind: 'audio' | 'video',
  codec: WhipVideoCodec,
  input: string[],
  onSend?: (kind: 'audio' | 'video', packet: Buffer) => void,
  stdin: 'control' | 'media' = 'control',
): Promise<{ ffmpeg: FfmpegProcess; sock: dgram.Socket }> {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg) => {
    onSend?.(kind, msg);
    track.writeRtp(msg);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const ffmpeg = launchFfmpeg([...input, ...encodeArgs(kind, codec), '-f', 'rtp', `rtp://127.0.0.1:${sock.address().port}?pkt_size=1200`], { stdin });
  ffmpeg.exited.then(() => sock.close()).catch((err: unknown) => console.error('whip helper: closing the RTP socket failed', err));
  return { ffmpeg, sock };
}

export async function whipPublish(
  endpoint: string,
  streamKey: string | undefined,
  opts: {
    video?: WhipVideoCodec | false;
    audio?: boolean;
    videoInput?: string[];
    audioInput?: string[];
    /** Sees every RTP packet from FFmpeg just before werift sends it (benchmarks). */
    onSend?: (kind: 'audio' | 'video', packet: Buffer) => void;
    /** The video FFmpeg reads its input from stdin (`videoInput` then says `-i pipe:0`): write frames to `videoFeed`. */
    videoStdin?: boolean;
  } = {},
): Promise<WhipPublisher> {
  const videoCodec = opts.video === undefined ? 'VP8' : opts.video;
  const pc = new RTCPeerConnection({
    codecs: {
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, rtcpFeedback: [{ type: 'transport-cc' }] })],
      video: [
        videoCodec === 'H264'
          ? new RTCRtpCodecParameters({ mimeType: 'video/H264', clockRate: 90000, rtcpFeedback: FEEDBACK, parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' })
          : new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, rtcpFeedback: FEEDBACK }),
      ],
    },
    headerExtensions: { audio: [useSdesMid(), useAbsSendTime(), useTransportWideCC()], video: [useSdesMid(), useAbsSendTime(), useTransportWideCC()] },
  });
  const feeds: { kind: 'audio' | 'video'; track: MediaStreamTrack }[] = [];
  if (videoCodec) {
    const track = new MediaStreamTrack({ kind: 'video' });
    pc.addTransceiver(track, { direction: 'sendonly' });
    feeds.push({ kind: 'video', track });
  }
  if (opts.audio !== false) {
    const track = new MediaStreamTrack({ kind: 'audio' });
    pc.addTransceiver(track, { direction: 'sendonly' });
    feeds.push({ kind: 'audio', track });
  }
  await pc.setLocalDescription(await pc.createOffer());
  // Non-trickle: the whole offer, candidates included, in one POST.
  if (pc.iceGatheringState !== 'complete') {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 3000);
      pc.iceGatheringStateChange.subscribe((s) => {
        if (s === 'complete') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...(streamKey ? { Authorization: `Bearer ${streamKey}` } : {}) },
    body: pc.localDescription!.sdp,
  });
  const answer = await res.text();
  const ffmpegs: FfmpegProcess[] = [];
  const publisher: WhipPublisher = {
    pc,
    status: res.status,
    location: res.headers.get('location') ? new URL(res.headers.get('location')!, endpoint).href : '',
    etag: res.headers.get('etag'),
    links: res.headers.get('link'),
    answer,
    async stop() {
      const r = await fetch(publisher.location, { method: 'DELETE', headers: streamKey ? { Authorization: `Bearer ${streamKey}` } : {} });
      await publisher.close();
      return r;
    },
    async close() {
      await Promise.all(ffmpegs.map((f) => f.stop()));
      await pc.close();
    },
  };
  if (res.status !== 201) {
    if (process.env.WHIP_DEBUG) console.error(res.status, answer);
    await pc.close();
    return publisher;
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  for (const f of feeds) {
    const input =
      f.kind === 'video'
        ? (opts.videoInput ?? ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30'])
        : (opts.audioInput ?? ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000']);
    const stdin = f.kind === 'video' && opts.videoStdin ? 'media' : 'control';
    const { ffmpeg } = await feed(f.track, f.kind, videoCodec || 'VP8', input, opts.onSend, stdin);
    ffmpegs.push(ffmpeg);
    if (stdin === 'media') publisher.videoFeed = ffmpeg;
  }
  return publisher;
}

/**
 * Decodes RTP with FFmpeg: `push` forwards packets to it over UDP, `done` resolves with the number
 * of frames FFmpeg decoded (it exits after `frames`).
 */
export async function rtpDecoder(opts: { kind: 'audio' | 'video'; payloadType: number; codec: string; frames: number; port: number }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-whip-dec-'));
  const sdpFile = path.join(dir, 'in.sdp');
  const out = path.join(dir, 'frames.txt');
  const rtpmap = opts.kind === 'audio' ? `${opts.codec}/48000/2` : `${opts.codec}/90000`;
  fs.writeFileSync(
    sdpFile,
    ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=${opts.kind} ${opts.port} RTP/AVP ${opts.payloadType}`, `a=rtpmap:${opts.payloadType} ${rtpmap}`, ''].join('\n'),
  );
  const limit = opts.kind === 'audio' ? ['-frames:a', String(opts.frames)] : ['-frames:v', String(opts.frames)];
  const ffmpeg = launchFfmpeg(['-protocol_whitelist', 'file,udp,rtp', '-i', sdpFile, ...limit, '-f', 'framecrc', '-y', out]);
  const sock = dgram.createSocket('udp4');
  return {
    ffmpeg,
    push(rtp: RtpPacket) {
      sock.send(rtp.serialize(), opts.port, '127.0.0.1');
    },
    async done(): Promise<number> {
      await ffmpeg.exited;
      sock.close();
      const text = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
      return text.split('\n').filter((l) => /^\d+,/.test(l)).length;
    },
    async stop() {
      await ffmpeg.stop();
      sock.close();
    },
  };
}
