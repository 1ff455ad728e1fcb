// PCM in and out of the room for agents, all through the one FFmpeg launcher:
// - RtpAudioDecoder: a subscribed track's Opus RTP → FFmpeg (SDP over UDP) → 48 kHz mono s16 PCM
//   (over a loopback TCP socket, since the launcher keeps FFmpeg's stdout for nothing) → 20 ms frames.
// - PcmPublisher: PCM chunks, paced in real time with silence in the gaps → FFmpeg stdin → Opus RTP
//   → the agent participant's track. Pacing here means any source (a TTS stream that bursts, a
//   queue that runs dry) gives a steady 50 packets/s with correct timestamps.
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sleep } from '../async.ts';
import { moduleLogger, type Logger } from '../logger.ts';
import { launchFfmpeg, type FfmpegProcess } from '../media/ffmpeg.ts';

export const SAMPLE_RATE = 48_000;
export const FRAME_MS = 20;
export const FRAME_SAMPLES = (SAMPLE_RATE * FRAME_MS) / 1000;

/** 20 ms of 48 kHz mono signed 16-bit PCM. */
export interface AudioFrame {
  samples: Int16Array;
  sampleRate: typeof SAMPLE_RATE;
  channels: 1;
  /** Date.now() when the frame came out of the decoder. */
  receivedAt: number;
}

export { rmsDbfs } from '../media/audioLevel.ts';

/** An async queue: producers push, one consumer iterates; beyond `max` items the oldest are dropped. */
export class FrameQueue<T> implements AsyncIterableIterator<T> {
  readonly #items: T[] = [];
  #waiter: ((r: IteratorResult<T>) => void) | undefined;
  #done = false;
  readonly #max: number;
  readonly #onReturn: (() => void) | undefined;

  constructor(max = 500, onReturn?: () => void) {
    this.#max = max;
    this.#onReturn = onReturn;
  }

  push(item: T): void {
    if (this.#done) return;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w({ value: item, done: false });
      return;
    }
    this.#items.push(item);
    if (this.#items.length > this.#max) this.#items.shift();
  }

  end(): void {
    if (this.#done) return;
    this.#done = true;
    this.#waiter?.({ value: undefined, done: true });
    this.#waiter = undefined;
  }

  get ended(): boolean {
    return this.#done;
  }

  next(): Promise<IteratorResult<T>> {
    const item = this.#items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.end();
    this.#items.length = 0;
    this.#onReturn?.();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

/** A PCM source the agent feeds by hand (e.g. with speech from a TTS service): push chunks of any length. */
export class AudioSource implements AsyncIterable<Int16Array> {
  readonly #queue = new FrameQueue<Int16Array>(100_000);

  push(samples: Int16Array): void {
    this.#queue.push(samples);
  }

  close(): void {
    this.#queue.end();
  }

  [Symbol.asyncIterator](): AsyncIterator<Int16Array> {
    return this.#queue;
  }
}

/** Where the decoder's background steps (FFmpeg exit handling, stops) report failures. */
const decoderLog = moduleLogger('agent-audio');

/** A UDP port that was free a moment ago (FFmpeg binds it itself from the SDP). */
async function freeUdpPort(): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const { port } = sock.address();
  await new Promise<void>((resolve) => sock.close(() => resolve()));
  return port;
}

/** Anything that hands out RTP packets as they arrive (werift's MediaStreamTrack.onReceiveRtp). */
export interface RtpSource {
  onReceiveRtp: { subscribe(fn: (rtp: { header: { payloadType: number }; serialize(): Buffer }) => void): { unSubscribe(): void } };
}

/** Decodes one Opus RTP track to PCM frames for any number of listeners; FFmpeg runs while someone listens. */
export class RtpAudioDecoder {
  readonly #track: RtpSource;
  readonly #listeners = new Set<(f: AudioFrame) => void>();
  #ffmpeg: FfmpegProcess | undefined;
  #server: net.Server | undefined;
  #udp: dgram.Socket | undefined;
  #sub: { unSubscribe(): void } | undefined;
  #dir: string | undefined;
  #closed = false;
  /** UDP port of the running FFmpeg's RTP input; 0 while none is ready. */
  #target = 0;
  #launching = false;
  #lastLaunch = 0;
  readonly #enders = new Set<() => void>();

  constructor(track: RtpSource) {
    this.#track = track;
  }

  /** Frames from now on, until the track goes or the iterator is returned. */
  frames(): FrameQueue<AudioFrame> {
    const queue = new FrameQueue<AudioFrame>(250, () => {
      this.#listeners.delete(push);
      if (this.#listeners.size === 0) this.#stop();
    });
    const push = (f: AudioFrame) => queue.push(f);
    this.#listeners.add(push);
    if (this.#closed) queue.end();
    else this.#start();
    this.#enders.add(() => queue.end());
    return queue;
  }

  #start(): void {
    if (this.#sub) return;
    this.#sub = this.#track.onReceiveRtp.subscribe((rtp) => {
      if (this.#target) {
        this.#udp?.send(rtp.serialize(), this.#target, '127.0.0.1');
        return;
      }
      // Packets are dropped while FFmpeg starts, and for a second after a failed start.
      if (this.#launching || Date.now() - this.#lastLaunch < 1000) return;
      this.#launching = true;
      this.#lastLaunch = Date.now();
      // The payload type is whatever the SFU negotiated; the first packet tells it.
      void this.#launch(rtp.header.payloadType).then(
        (port) => {
          this.#launching = false;
          this.#target = port;
        },
        () => {
          this.#launching = false;
          this.#teardown();
        },
      );
    });
  }

  async #launch(payloadType: number): Promise<number> {
    const server = net.createServer();
    this.#server = server;
    let carry: Buffer = Buffer.alloc(0);
    const frameBytes = FRAME_SAMPLES * 2;
    server.on('connection', (sock) => {
      sock.on('error', () => undefined);
      sock.on('data', (chunk: Buffer) => {
        carry = carry.length ? Buffer.concat([carry, chunk]) : chunk;
        while (carry.length >= frameBytes) {
          // Copy out: the frame must not alias a buffer the socket reuses.
          const samples = new Int16Array(FRAME_SAMPLES);
          Buffer.from(samples.buffer).set(carry.subarray(0, frameBytes));
          carry = carry.subarray(frameBytes);
          const frame: AudioFrame = { samples, sampleRate: SAMPLE_RATE, channels: 1, receivedAt: Date.now() };
          for (const l of this.#listeners) l(frame);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const pcmPort = (server.address() as net.AddressInfo).port;
    const rtpPort = await freeUdpPort();
    this.#dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-agent-'));
    const sdpFile = path.join(this.#dir, 'in.sdp');
    fs.writeFileSync(
      sdpFile,
      ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=agent', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${rtpPort} RTP/AVP ${payloadType}`, `a=rtpmap:${payloadType} opus/48000/2`, ''].join('\r\n'),
    );
    if (this.#closed || !this.#sub) throw new Error('decoder stopped');
    const ff = launchFfmpeg([
      '-protocol_whitelist', 'file,udp,rtp,tcp',
      '-fflags', 'nobuffer', '-flags', 'low_delay', '-probesize', '32', '-analyzeduration', '0',
      '-i', sdpFile,
      '-vn', '-f', 's16le', '-ar', String(SAMPLE_RATE), '-ac', '1', '-flush_packets', '1',
      `tcp://127.0.0.1:${pcmPort}`,
    ]);
    this.#ffmpeg = ff;
    // FFmpeg that dies while we listen (its RTP port was taken meanwhile, say) is started again on
    // a later packet, with new ports.
    ff.exited
      .then(() => {
        if (this.#ffmpeg === ff) this.#teardown();
      })
      .catch((err: unknown) => decoderLog.error({ err }, 'audio decoder teardown failed'));
    this.#udp = dgram.createSocket('udp4');
    this.#udp.on('error', () => undefined);
    // FFmpeg binds the RTP port while it opens the SDP; packets sent before that are lost, which is fine.
    await sleep(200);
    if (this.#ffmpeg !== ff) throw new Error('decoder stopped');
    return rtpPort;
  }

  /** Stops FFmpeg and its sockets; the RTP subscription stays, so the next packet starts a new one. */
  #teardown(): void {
    this.#target = 0;
    const ff = this.#ffmpeg;
    this.#ffmpeg = undefined;
    ff?.stop(500).catch((err: unknown) => decoderLog.warn({ err }, 'stopping the audio decoder FFmpeg failed'));
    this.#server?.close();
    this.#server = undefined;
    this.#udp?.close();
    this.#udp = undefined;
    if (this.#dir) fs.rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
  }

  #stop(): void {
    this.#sub?.unSubscribe();
    this.#sub = undefined;
    this.#teardown();
  }

  /** The track went away: every iterator ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const end of this.#enders) end();
    this.#enders.clear();
    this.#listeners.clear();
    this.#stop();
  }
}

/** Sends PCM to FFmpeg in real time; `writeRtp` gets the Opus RTP packets it makes. */
export class PcmPublisher {
  readonly #ffmpeg: FfmpegProcess;
  readonly #udp: dgram.Socket;
  readonly #pending: Int16Array[] = [];
  #pendingSamples = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #silence = Buffer.alloc(FRAME_SAMPLES * 2);
  /** Resolves when the source ended, threw (logged) or the publisher was stopped; never rejects. */
  readonly finished: Promise<void>;

  private constructor(ffmpeg: FfmpegProcess, udp: dgram.Socket, source: AsyncIterable<Int16Array>, log: Logger) {
    this.#ffmpeg = ffmpeg;
    this.#udp = udp;
    const start = performance.now();
    let sent = 0;
    this.#timer = setInterval(() => {
      const due = Math.floor((performance.now() - start) / FRAME_MS) - sent;
      // After a long stall, skip ahead rather than burst seconds of audio at once.
      const n = Math.min(due, 10);
      sent += due;
      for (let i = 0; i < n; i++) this.#ffmpeg.write(this.#nextFrame());
    }, FRAME_MS / 2);
    // A source that throws (a TTS stream failing, say) is the agent's problem, not the worker's: left
    // unhandled the rejection would take the whole worker process down with every job on it. The
    // track stays published and carries silence until the agent stops it.
    this.finished = this.#pump(source).catch((err: unknown) => log.warn({ err }, 'audio source failed; publishing silence'));
  }

  static async start(writeRtp: (packet: Buffer) => void, source: AsyncIterable<Int16Array>, log: Logger = moduleLogger('agent-audio')): Promise<PcmPublisher> {
    const udp = dgram.createSocket('udp4');
    udp.on('message', (msg) => writeRtp(msg));
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    let ffmpeg: FfmpegProcess;
    try {
      ffmpeg = launchFfmpeg(
        [
          '-fflags', 'nobuffer', '-probesize', '32', '-analyzeduration', '0',
          '-f', 's16le', '-ar', String(SAMPLE_RATE), '-ac', '1', '-i', 'pipe:0',
          '-c:a', 'libopus', '-application', 'lowdelay', '-frame_duration', String(FRAME_MS), '-b:a', '48k',
          '-payload_type', '111', '-f', 'rtp', `rtp://127.0.0.1:${udp.address().port}?pkt_size=1200`,
        ],
        { stdin: 'media' },
      );
    } catch (err) {
      udp.close(); // no FFmpeg (not installed, spawn failed): the socket would otherwise stay bound
      throw err;
    }
    ffmpeg.exited.then(() => udp.close()).catch((err: unknown) => log.warn({ err }, 'closing the audio publisher socket failed'));
    return new PcmPublisher(ffmpeg, udp, source, log);
  }

  #nextFrame(): Buffer {
    if (this.#pendingSamples < FRAME_SAMPLES) return this.#silence;
    const out = new Int16Array(FRAME_SAMPLES);
    let filled = 0;
    while (filled < FRAME_SAMPLES) {
      const head = this.#pending[0]!;
      const take = Math.min(head.length, FRAME_SAMPLES - filled);
      out.set(head.subarray(0, take), filled);
      filled += take;
      if (take === head.length) this.#pending.shift();
      else this.#pending[0] = head.subarray(take);
    }
    this.#pendingSamples -= FRAME_SAMPLES;
    return Buffer.from(out.buffer);
  }

  async #pump(source: AsyncIterable<Int16Array>): Promise<void> {
    for await (const chunk of source) {
      if (this.#closed) break;
      this.#pending.push(chunk);
      this.#pendingSamples += chunk.length;
      // Backpressure: a source faster than real time waits while more than 2 s are queued.
      while (this.#pendingSamples > SAMPLE_RATE * 2 && !this.#closed) await sleep(FRAME_MS * 5);
    }
  }

  /** Samples queued and not yet sent. */
  get queuedSamples(): number {
    return this.#pendingSamples;
  }

  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#ffmpeg.stop(1000);
    try {
      this.#udp.close();
    } catch {
      // already closed when FFmpeg exited
    }
  }
}
