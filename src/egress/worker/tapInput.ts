// The worker's end of a tap session: it receives the gateway's RTP in Node and passes it to FFmpeg
// on loopback, so that
//   - only the gateway can feed a recording: each track's socket is bound to the worker's RTP host
//     and accepts packets from the one address and port the gateway announced for that track
//     (FFmpeg's own RTP sockets listen on every interface; its SDP admits 127.0.0.1 only);
//   - FFmpeg's first video packet is a decodable picture (an H.264 IDR with its SPS and PPS, a VP8
//     keyframe): it learns the picture size from it at once instead of probing a GOP, whatever the
//     machine's load, and a copied recording starts decodable;
//   - audio starts with the picture (held for a moment until the first video picture, so the
//     recording does not begin with seconds of sound over nothing and FFmpeg's probe sees both);
//   - every stream is mapped to one clock, the worker's arrival clock, by the sender reports sent
//     to FFmpeg (the gateway's own reports are dropped: cached pictures are sent from the gateway's
//     keyframe cache, which has none, and one clock for all streams keeps them in sync).
// Nothing waits forever: a video stream without a keyframe opens after `gateTimeoutMs`.
import dgram from 'node:dgram';
import fs from 'node:fs';
import type { Logger } from '../../logger.ts';
import { KeyframeTracker, parseRtp, senderReport, videoCodecOf } from '../../media/rtp.ts';
import { writeRtpInputSdp, type RtpInputStream } from '../../media/sdp.ts';
import type { TapTrack } from '../contract.ts';
import { sleep } from '../../time.ts';
import { udpPortPair } from './udpPorts.ts';

export interface TapInputOptions {
  /** Address the gateway sends to (this worker's RTP host). */
  host: string;
  tracks: TapTrack[];
  /** Most time audio waits for the first video picture (0: audio is not held). */
  holdAudioMs: number;
  /** Most time a video stream waits for a keyframe before it is passed on as it comes. */
  gateTimeoutMs: number;
  log: Logger;
}

/** Sender reports go to FFmpeg this often (and once before a stream's first packet). */
const SR_INTERVAL_MS = 1000;
/** A stream starts this long after its first picture: a replayed keyframe interval has arrived by then. */
const FIRST_PACKET_DELAY_MS = 150;
const FIRST_PACKET_GAP_MS = 10;
/** How long to wait for FFmpeg to bind its ports before sending anyway (a start under heavy load). */
const RECEIVER_DEADLINE_MS = 10_000;
/** Bound of what a stream holds while it waits (bytes). */
const MAX_HELD = 8 * 1024 * 1024;

/**
 * Socket buffers (and FFmpeg's, ffmpegArgs.ts): a cached keyframe interval arrives as a burst of up
 * to a few MB. The kernel caps them at net.core.rmem_max / wmem_max (README: raise them to 4 MB).
 */
export const RTP_SOCKET_BUFFER = 4 * 1024 * 1024;

const bindUdp = (host: string, port = 0): Promise<dgram.Socket> =>
  new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: RTP_SOCKET_BUFFER, sendBufferSize: RTP_SOCKET_BUFFER });
    s.once('error', reject);
    s.bind(port, host, () => {
      s.off('error', reject);
      s.on('error', () => undefined); // FFmpeg gone: its exit ends the run
      resolve(s);
    });
  });

class Lane {
  readonly track: TapTrack;
  readonly inRtp: dgram.Socket;
  readonly inRtcp: dgram.Socket;
  readonly ffmpeg: { port: number; rtcpPort: number };
  readonly #tracker: KeyframeTracker | undefined;
  /** 'wait': held; 'starting': the first report went, packets queue a moment; 'open': passed on. */
  state: 'wait' | 'starting' | 'open' = 'wait';
  held: { packet: Buffer; at: number }[] = [];
  #heldBytes = 0;
  /** Index in `held` where the picture being received starts (video). */
  #pictureStart = 0;
  ssrc = 0;
  refused = 0;
  received = 0;
  gaps = 0;
  lastSeq: number | undefined;
  lastTs: number | undefined;
  lastAt = 0;
  packets = 0;
  octets = 0;

  constructor(track: TapTrack, inRtp: dgram.Socket, inRtcp: dgram.Socket, ffmpeg: { port: number; rtcpPort: number }) {
    this.track = track;
    this.inRtp = inRtp;
    this.inRtcp = inRtcp;
    this.ffmpeg = ffmpeg;
    if (track.kind === 'video') this.#tracker = new KeyframeTracker(videoCodecOf(track.codec.mimeType));
  }

  /** Holds a packet while waiting; for video, true once a decodable picture starts the held packets. */
  hold(packet: Buffer, at: number): boolean {
    const h = parseRtp(packet);
    if (!h) return false;
    if (this.#tracker) {
      const { newPicture, keyframe } = this.#tracker.push(h, packet);
      // Until a keyframe, only the picture being received is kept (its first packets may be the SPS/PPS).
      if (newPicture) {
        this.held = [];
        this.#heldBytes = 0;
      }
      this.held.push({ packet, at });
      this.#heldBytes += packet.length;
      return keyframe;
    }
    this.held.push({ packet, at });
    this.#heldBytes += packet.length;
    while (this.#heldBytes > MAX_HELD && this.held.length > 1) this.#heldBytes -= this.held.shift()!.packet.length;
    return false;
  }

  clearHeld(): { packet: Buffer; at: number }[] {
    const out = this.held;
    this.held = [];
    this.#heldBytes = 0;
    return out;
  }
}

export class TapInput {
  readonly #o: TapInputOptions;
  readonly #lanes: Lane[];
  readonly #out: dgram.Socket;
  readonly #timers: NodeJS.Timeout[] = [];
  #videoOpenedAt = 0;
  #closed = false;
  /** FFmpeg has bound its ports: until then nothing is sent (the first picture would be lost). */
  #receiverReady = false;
  readonly #onReady: (() => void)[] = [];
  #listening: Promise<void> = Promise.resolve();
  /** Wall clock (ms) of the first packet passed to FFmpeg: where the recording starts. */
  firstForwardAt = 0;

  private constructor(o: TapInputOptions, lanes: Lane[], out: dgram.Socket) {
    this.#o = o;
    this.#lanes = lanes;
    this.#out = out;
  }

  static async open(o: TapInputOptions): Promise<TapInput> {
    const sockets: dgram.Socket[] = [];
    try {
      const lanes: Lane[] = [];
      // Audio first in FFmpeg's SDP. Its RTP input reads the first of its sockets that has a
      // packet, in SDP order: when FFmpeg falls behind (a starved CPU), the first streams always
      // have one and the last starve. Audio last starved the compositor's amix and stalled its
      // whole output beside a CPU hog (13 of 400 audio packets read); audio first, a few packets
      // each, measured no stall in the same runs. Streams are mapped by kind (0:v:i, 0:a:i), so
      // the order is free.
      for (const t of [...o.tracks].sort((a, b) => Number(a.kind === 'video') - Number(b.kind === 'video'))) {
        const inRtp = await bindUdp(o.host);
        sockets.push(inRtp);
        const inRtcp = await bindUdp(o.host);
        sockets.push(inRtcp);
        lanes.push(new Lane(t, inRtp, inRtcp, await udpPortPair('127.0.0.1')));
      }
      const out = await bindUdp('127.0.0.1');
      const input = new TapInput(o, lanes, out);
      input.#wire();
      return input;
    } catch (err) {
      for (const s of sockets) s.close();
      throw err;
    }
  }

  /**
   * Resolves once FFmpeg listens on every RTP port of its SDP (on Linux, seen in /proc/net/udp*),
   * or at the receiver deadline, or when this input closes: what a caller waits for before having
   * the gateway send (its keyframe request then meets a listening FFmpeg). Never rejects.
   */
  get listening(): Promise<void> {
    return this.#listening;
  }

  /** Where the gateway must send each track. */
  get targets(): { trackSid: string; ip: string; port: number; rtcpPort: number }[] {
    return this.#lanes.map((l) => ({ trackSid: l.track.trackSid, ip: this.#o.host, port: l.inRtp.address().port, rtcpPort: l.inRtcp.address().port }));
  }

  /** The streams of FFmpeg's SDP (loopback ports), in the order of the tracks. */
  get streams(): RtpInputStream[] {
    return this.#lanes.map((l) => ({ ...l.track.codec, ...l.ffmpeg }));
  }

  /** FFmpeg's SDP for this input: its loopback ports, admitting packets from loopback only. */
  get sdp(): string {
    return writeRtpInputSdp(this.streams, '127.0.0.1', 'roomgate', ['127.0.0.1']);
  }

  #wire(): void {
    const hasVideo = this.#lanes.some((l) => l.track.kind === 'video');
    for (const lane of this.#lanes) {
      const from = lane.track.from;
      lane.inRtp.on('message', (m, rinfo) => {
        if (this.#closed) return;
        if (rinfo.address !== from.ip || rinfo.port !== from.port) {
          if (lane.refused++ === 0) this.#o.log.warn({ track: lane.track.trackSid, from: `${rinfo.address}:${rinfo.port}`, expected: `${from.ip}:${from.port}` }, 'RTP from an unexpected sender dropped');
          return;
        }
        const h = parseRtp(m);
        if (h) {
          if (lane.lastSeq !== undefined && ((h.seq - lane.lastSeq) & 0xffff) > 1 && ((h.seq - lane.lastSeq) & 0xffff) < 0x8000) lane.gaps += ((h.seq - lane.lastSeq) & 0xffff) - 1;
          lane.lastSeq = h.seq;
          lane.received++;
        }
        this.#receive(lane, m, Date.now());
      });
      // The gateway's reports describe its clocks, not ours (see above): drained, not passed on.
      lane.inRtcp.on('message', () => undefined);
      if (lane.track.kind === 'video') {
        this.#timers.push(setTimeout(() => this.#timeout(lane), this.#o.gateTimeoutMs));
      } else if (!hasVideo || this.#o.holdAudioMs <= 0) {
        this.#start(lane, 0);
      } else {
        this.#timers.push(setTimeout(() => this.#releaseAudio(0), this.#o.holdAudioMs));
      }
    }
    this.#listening = this.#awaitReceiver().then(() => {
      this.#receiverReady = true;
      for (const fn of this.#onReady.splice(0)) fn();
    });
    const sr = setInterval(() => {
      for (const l of this.#lanes) if (l.state === 'open') this.#report(l);
    }, SR_INTERVAL_MS);
    this.#timers.push(sr);
  }

  #receive(lane: Lane, packet: Buffer, at: number): void {
    if (lane.state === 'open') return this.#forward(lane, packet, at);
    if (lane.state === 'starting') {
      lane.held.push({ packet, at });
      return;
    }
    if (!lane.hold(packet, at)) return;
    this.#start(lane, FIRST_PACKET_DELAY_MS);
    const pictureAt = lane.held[0]?.at ?? at;
    if (!this.#videoOpenedAt) {
      this.#videoOpenedAt = pictureAt;
      this.#releaseAudio(pictureAt);
    }
  }

  /** A video stream without a keyframe in time: passed on as it comes (the decoder recovers at one). */
  #timeout(lane: Lane): void {
    if (this.#closed || lane.state !== 'wait') return;
    this.#o.log.warn({ track: lane.track.trackSid, waitedMs: this.#o.gateTimeoutMs }, 'no keyframe from the source in time; recording from the packets as they come');
    this.#start(lane, FIRST_PACKET_DELAY_MS);
    if (!this.#videoOpenedAt) {
      this.#videoOpenedAt = Date.now();
      this.#releaseAudio(0);
    }
  }

  /** Audio from `since` on goes to FFmpeg (0: all that is held). */
  #releaseAudio(since: number): void {
    for (const l of this.#lanes) {
      if (l.track.kind !== 'audio' || l.state !== 'wait') continue;
      l.held = l.held.filter((h) => h.at >= since);
      this.#start(l, FIRST_PACKET_DELAY_MS);
    }
  }

  /**
   * Once FFmpeg listens and a moment has passed (a replayed keyframe interval arrives as a burst
   * within it): the first report, mapping the newest timestamp held to its arrival (cached
   * pictures are older than their arrival), then what is held, then everything as it comes.
   */
  #start(lane: Lane, delayMs: number): void {
    if (lane.state !== 'wait') return;
    lane.state = 'starting';
    const report = () => {
      if (this.#closed) return;
      for (const h of lane.held) {
        const r = parseRtp(h.packet);
        if (r) this.#note(lane, r.ssrc, r.timestamp, h.at, 0);
      }
      this.#report(lane);
      // RTCP is read before RTP when both wait (FFmpeg's rtp_read), and the gap makes sure of it.
      this.#timers.push(setTimeout(go, FIRST_PACKET_GAP_MS));
    };
    const go = () => {
      if (this.#closed) return;
      lane.state = 'open';
      this.#o.log.debug({ track: lane.track.trackSid, kind: lane.track.kind, held: lane.held.length }, 'RTP input open');
      for (const h of lane.clearHeld()) this.#forward(lane, h.packet, h.at);
    };
    const later = () => {
      if (delayMs > 0) this.#timers.push(setTimeout(report, delayMs));
      else report();
    };
    if (this.#receiverReady) later();
    else this.#onReady.push(later);
  }

  /** Resolves when FFmpeg listens on every RTP port (read from /proc/net/udp*), or at a deadline. */
  async #awaitReceiver(): Promise<void> {
    const ports = new Set(this.#lanes.map((l) => l.ffmpeg.port));
    const deadline = Date.now() + RECEIVER_DEADLINE_MS;
    while (!this.#closed && Date.now() < deadline) {
      const bound = boundUdpPorts();
      if (!bound) {
        await sleep(300); // not Linux: FFmpeg binds within this after its start
        return;
      }
      if ([...ports].every((p) => bound.has(p))) return;
      await sleep(10);
    }
  }

  #note(lane: Lane, ssrc: number, ts: number, at: number, bytes: number): void {
    lane.ssrc = ssrc;
    // The newest timestamp and when it arrived: the stream's clock against ours.
    if (lane.lastTs === undefined || ((ts - lane.lastTs) | 0) > 0) {
      lane.lastTs = ts;
      lane.lastAt = at;
    }
    if (bytes > 0) {
      lane.packets++;
      lane.octets += bytes;
    }
  }

  #forward(lane: Lane, packet: Buffer, at: number): void {
    const h = parseRtp(packet);
    if (!h) return;
    this.#note(lane, h.ssrc, h.timestamp, at, h.payloadEnd - h.payloadOffset);
    this.firstForwardAt ||= Date.now();
    this.#out.send(packet, lane.ffmpeg.port, '127.0.0.1');
  }

  #report(lane: Lane): void {
    if (lane.lastTs === undefined || this.#closed) return;
    const now = Date.now();
    const rtp = lane.lastTs + Math.round(((now - lane.lastAt) * lane.track.codec.clockRate) / 1000);
    this.#out.send(senderReport(lane.ssrc, now, rtp, lane.packets, lane.octets), lane.ffmpeg.rtcpPort, '127.0.0.1');
  }

  close(): void {
    if (this.#closed) return;
    this.#onReady.length = 0;
    for (const l of this.#lanes) this.#o.log.debug({ track: l.track.trackSid, received: l.received, lost: l.gaps, refused: l.refused }, 'RTP input closed');
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    for (const l of this.#lanes) {
      l.inRtp.close();
      l.inRtcp.close();
    }
    this.#out.close();
  }
}

/** Local ports of the machine's UDP sockets, or undefined where /proc/net/udp is not there. */
function boundUdpPorts(): Set<number> | undefined {
  const ports = new Set<number>();
  let found = false;
  for (const f of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    found = true;
    for (const line of text.split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      const port = local ? Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) : NaN;
      if (Number.isFinite(port)) ports.add(port);
    }
  }
  return found ? ports : undefined;
}
