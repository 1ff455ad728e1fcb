// The media of one phone call into its room: the caller's G.711 RTP arrives on our UDP socket (the
// port in the SDP answer), its payload goes to FFmpeg's stdin as raw μ-law/A-law, and FFmpeg sends
// Opus RTP to a PlainTransport the SIP participant publishes on (as the ingest pipeline does).
//
// Reading RTP here rather than in FFmpeg lets the gateway see RFC 4733 DTMF events, lock onto the
// caller's address, and keep the audio's timing: a gap in the RTP timestamps (loss, or a caller
// that stops sending while on hold) becomes silence of the same length, and late packets are
// dropped, so the room hears the call at its own pace instead of compressed.
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { TypedEmitter } from '../emitter.ts';
import type { Logger } from '../logger.ts';
import { launchFfmpeg, type FfmpegProcess } from '../media/ffmpeg.ts';
import { parseRtp } from '../media/rtp.ts';
import type { Participant } from '../sfu/Participant.ts';
import type { CallOffer } from './sdp.ts';

const OPUS_PT = 100;
/** Silence in each law: the code of a zero sample. */
const SILENCE = { PCMU: 0xff, PCMA: 0xd5 } as const;
/** A timestamp jump past this (8 kHz samples, 2 s) is a new stream, not a gap to fill. */
const MAX_GAP_SAMPLES = 16_000;

export type CallMediaEvents = {
  /** A DTMF key (RFC 4733 event code and its character), once per key press. */
  dtmf: [code: number, digit: string];
  /** FFmpeg ended by itself (failure: the call cannot carry audio any more). */
  failed: [error: string];
};

/** RFC 4733 §3.2 event codes 0–15. */
const DTMF_DIGITS = '0123456789*#ABCD';
/** 20 ms at 8 kHz. */
const FRAME_SAMPLES = 160;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class CallMedia extends TypedEmitter<CallMediaEvents> {
  readonly #socket: dgram.Socket;
  /** The far end's media (its SDP): known at once for calls we answer, at the 200 for calls we place. */
  #offer: CallOffer | undefined;
  readonly #log: Logger;
  #ffmpeg: FfmpegProcess | undefined;
  #stopping = false;
  /** Timestamp right after the last written payload, and its SSRC. */
  #next: { ssrc: number; ts: number } | undefined;
  /** RTP timestamp of the last DTMF event reported (one event spans many packets). */
  #lastDtmfTs: number | undefined;
  /** RTP packets received from the caller (tests and logs). */
  packets = 0;
  /** Our stream to the caller: SSRC, next sequence number and timestamp. */
  readonly #out = { ssrc: randomInt(1, 2 ** 31), seq: randomInt(0, 0x10000), ts: randomInt(0, 2 ** 31), first: true };

  /** Our DTMF key in progress: audio waits while its events go out (RFC 4733 §2.5.1.2). */
  #dtmfUntil = 0;
  #dtmfQueue: Promise<void> = Promise.resolve();

  private constructor(socket: dgram.Socket, offer: CallOffer | undefined, log: Logger) {
    super();
    this.#socket = socket;
    this.#offer = offer;
    this.#log = log;
    this.onListenerError((event, err) => log.error({ event, err }, 'call media listener threw'));
  }

  /** Binds the RTP socket (its port goes into the SDP answer); media flows after start(). */
  static async open(bind: string, offer: CallOffer | undefined, log: Logger): Promise<CallMedia> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, bind, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (err) => log.debug({ err: err.message }, 'call RTP socket error'));
    return new CallMedia(socket, offer, log);
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** The far end's answer to our offer (a call we place), before start(). */
  setRemote(remote: CallOffer): void {
    this.#offer = remote;
  }

  /** Publishes the call's audio track for `participant` and starts the transcode. */
  async start(participant: Participant): Promise<void> {
    const transport = await participant.openPlainSend('127.0.0.1');
    const ssrc = randomInt(1, 2 ** 31);
    await participant.publishTrack({
      transportId: transport.id,
      kind: 'audio',
      source: 'microphone',
      name: 'phone',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: OPUS_PT, clockRate: 48000, channels: 2 }],
        encodings: [{ ssrc }],
      },
    });
    if (this.#stopping) return;
    const offer = this.#offer;
    if (!offer) throw new Error('call media started before the far end\'s SDP was known');
    const law = offer.codec === 'PCMU' ? 'mulaw' : 'alaw';
    const target = `rtp://127.0.0.1:${transport.tuple.localPort}?rtcpport=${transport.rtcpTuple!.localPort}&pkt_size=1200`;
    const ffmpeg = launchFfmpeg(
      [
        '-f', law, '-ar', '8000', '-ac', '1', '-i', 'pipe:0',
        // Speech at 8 kHz: 32 kb/s mono Opus carries all of it; 20 ms frames like the caller's.
        '-c:a', 'libopus', '-ar', '48000', '-ac', '1', '-b:a', '32k', '-application', 'voip', '-frame_duration', '20',
        '-f', 'rtp', '-payload_type', String(OPUS_PT), '-ssrc', String(ssrc), target,
      ],
      { log: this.#log, stdin: 'media' },
    );
    this.#ffmpeg = ffmpeg;
    ffmpeg.exited
      .then((code) => {
        if (this.#stopping) return;
        this.safeEmit('failed', `ffmpeg exited with ${code ?? 'a signal'}: ${ffmpeg.stderrTail().split('\n').slice(-2).join(' | ') || 'no output'}`);
      })
      .catch((err: unknown) => this.#log.error({ err }, 'handling the call FFmpeg exit failed'));
    this.listen();
  }

  #listening = false;

  /**
   * Reads the far end's RTP before the audio goes anywhere (a caller typing a PIN): DTMF events
   * are reported, audio is dropped until start().
   */
  listen(): void {
    if (this.#listening) return;
    this.#listening = true;
    this.#socket.on('message', (msg, from) => this.#onRtp(msg, from));
  }

  #onRtp(msg: Buffer, from: dgram.RemoteInfo): void {
    const offer = this.#offer;
    // Only the address the caller's SDP names sends the call's audio (no one else can inject it).
    if (!offer || from.address !== offer.address) return;
    const h = parseRtp(msg);
    if (!h) return;
    this.packets++;
    if (h.payloadType === offer.dtmfPayloadType) return this.#onDtmf(msg.subarray(h.payloadOffset, h.payloadEnd), h.timestamp);
    if (h.payloadType !== offer.payloadType) return;
    const payload = msg.subarray(h.payloadOffset, h.payloadEnd);
    const next = this.#next;
    if (next && next.ssrc === h.ssrc) {
      const gap = (h.timestamp - next.ts) | 0; // signed, across the 32-bit wrap
      if (gap < 0) return; // late or repeated: its time has passed
      if (gap > 0 && gap <= MAX_GAP_SAMPLES) this.#write(Buffer.alloc(gap, SILENCE[offer.codec]));
    }
    this.#write(payload);
    this.#next = { ssrc: h.ssrc, ts: (h.timestamp + payload.length) >>> 0 };
  }

  #write(chunk: Buffer): void {
    // A full pipe means FFmpeg stalled: dropping keeps the call live rather than queueing without end.
    if ((this.#ffmpeg?.pending ?? 0) > 64 * 1024) return;
    this.#ffmpeg?.write(chunk);
  }

  /**
   * Sends 20 ms of the caller's codec from the port in our SDP answer (symmetric RTP: phones and
   * NATs expect the answer's port to be the source too).
   */
  sendAudio(payload: Buffer): void {
    const offer = this.#offer;
    if (this.#stopping || !offer) return;
    // While a key's events go out the audio pauses; its clock keeps running (the event covers it).
    if (Date.now() < this.#dtmfUntil) {
      this.#out.ts = (this.#out.ts + payload.length) >>> 0;
      return;
    }
    this.#sendRtp(offer.payloadType, payload, payload.length);
  }

  #sendRtp(payloadType: number, payload: Buffer, advance: number, marker = this.#out.first): void {
    const offer = this.#offer;
    if (this.#stopping || !offer) return;
    const o = this.#out;
    const h = Buffer.alloc(12);
    h[0] = 0x80;
    h[1] = (marker ? 0x80 : 0) | payloadType;
    h.writeUInt16BE(o.seq, 2);
    h.writeUInt32BE(o.ts >>> 0, 4);
    h.writeUInt32BE(o.ssrc, 8);
    o.first = false;
    o.seq = (o.seq + 1) & 0xffff;
    o.ts = (o.ts + advance) >>> 0;
    this.#socket.send(Buffer.concat([h, payload]), offer.port, offer.address);
  }

  /**
   * Presses `digits` on the far end's keypad as RFC 4733 events (keys 0-9 * # A-D; 'w' waits
   * half a second, as LiveKit's dtmf field allows): each key 100 ms of events every 20 ms, then its
   * end packet three times (§2.5.1.4), 60 ms apart from the next key. False when the far end
   * offered no telephone-event (the keys cannot be sent in band).
   */
  sendDtmf(digits: string): boolean {
    if (this.#offer?.dtmfPayloadType === undefined) return false;
    const run = async () => {
      for (const key of digits) {
        if (this.#stopping) return;
        if (key === 'w') {
          await sleep(500);
          continue;
        }
        const code = DTMF_DIGITS.indexOf(key.toUpperCase());
        if (code < 0) continue;
        await this.#sendKey(code);
        await sleep(60);
      }
    };
    this.#dtmfQueue = this.#dtmfQueue.then(run).catch((err: unknown) => this.#log.warn({ err }, 'sending DTMF failed'));
    return true;
  }

  async #sendKey(code: number): Promise<void> {
    const pt = this.#offer?.dtmfPayloadType;
    if (pt === undefined) return;
    const STEPS = 5; // 5 × 20 ms
    this.#dtmfUntil = Date.now() + STEPS * 20 + 100;
    const start = this.#out.ts;
    const event = (duration: number, end: boolean) => {
      const p = Buffer.alloc(4);
      p[0] = code;
      p[1] = (end ? 0x80 : 0) | 10; // volume -10 dBm0
      p.writeUInt16BE(duration, 2);
      return p;
    };
    // Every packet of one event carries the event's start time; only the first has the marker.
    for (let i = 1; i <= STEPS; i++) {
      this.#out.ts = start;
      this.#sendRtp(pt, event(i * FRAME_SAMPLES, false), 0, i === 1);
      await sleep(20);
    }
    for (let i = 0; i < 3; i++) {
      this.#out.ts = start;
      this.#sendRtp(pt, event(STEPS * FRAME_SAMPLES, true), 0, false);
    }
    this.#out.ts = (start + STEPS * FRAME_SAMPLES) >>> 0;
    this.#dtmfUntil = 0;
  }

  /** RFC 4733 §2.3: event, E|R|volume, duration; one key press is many packets of one timestamp. */
  #onDtmf(payload: Buffer, timestamp: number): void {
    if (payload.length < 4) return;
    const event = payload[0]!;
    if (event >= DTMF_DIGITS.length || this.#lastDtmfTs === timestamp) return;
    this.#lastDtmfTs = timestamp;
    this.safeEmit('dtmf', event, DTMF_DIGITS[event]!);
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    try {
      this.#socket.close();
    } catch {
      // closed already
    }
    await this.#ffmpeg?.stop(1000);
  }
}
