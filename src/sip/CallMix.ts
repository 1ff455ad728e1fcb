// The room's audio for the caller: every audio track in the room except the caller's own, each
// tapped from the sfu (Room.openTap, as egress does) and decoded by its own FFmpeg to 8 kHz PCM,
// mixed here and encoded to the caller's G.711 every 20 ms (each track with a 60 ms prebuffer).
//
// One decoder per track rather than one FFmpeg with amix: amix waits for every input, so one
// silent or muted publisher would stall the whole mix; here a track with nothing queued is
// silence. The clock is ours: a packet goes out every 20 ms whether anyone speaks or not (phones
// expect a steady stream), and each track's queue is capped so a burst cannot build up delay.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import dgram from 'node:dgram';
import type { Logger } from '../logger.ts';
import { launchFfmpeg, type FfmpegProcess } from '../media/ffmpeg.ts';
import type { RtpSend } from '../media/rtpSend.ts';
import { writeRtpInputSdp } from '../media/sdp.ts';
import type { Participant, PublishedTrack } from '../sfu/Participant.ts';
import type { RoomImpl } from '../sfu/Room.ts';
import { encodeG711 } from './g711.ts';
import type { CallCodec } from './sdp.ts';

/** What the mix needs of the room: its publishers' tracks, the tap, and when tracks come and go. */
export type MixRoom = Pick<RoomImpl, 'participants' | 'participant' | 'openTap' | 'on' | 'off'>;

const FRAME = 160; // 20 ms at 8 kHz
/** What a track queues before it plays (60 ms). */
const PREBUFFER_BYTES = FRAME * 2 * 3;
/** Most PCM a track may have queued (300 ms); older audio is dropped. */
const MAX_QUEUE_BYTES = 8000 * 2 * 0.3;
/** Frames over which the smallest queue length is watched before a standing backlog is drained (1 s). */
const DRAIN_WINDOW = 50;

async function freeUdpPort(): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', resolve);
  });
  const { port } = sock.address();
  await new Promise<void>((resolve) => sock.close(() => resolve()));
  return port;
}

/** One remote audio track decoded to 8 kHz mono PCM. */
class TrackDecoder {
  #queue: Buffer = Buffer.alloc(0);
  #tap: RtpSend | undefined;
  #ffmpeg: FfmpegProcess | undefined;
  #dir: string | undefined;
  #closed = false;

  async open(room: MixRoom, track: PublishedTrack, log: Logger): Promise<void> {
    const tap = await room.openTap(track, '127.0.0.1');
    this.#tap = tap;
    if (this.#closed) return tap.close();
    const [port, rtcpPort] = [await freeUdpPort(), await freeUdpPort()];
    this.#dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-sip-'));
    const sdp = path.join(this.#dir, 'in.sdp');
    fs.writeFileSync(sdp, writeRtpInputSdp([{ ...tap.codec, port, rtcpPort }]));
    const ff = launchFfmpeg(
      [
        '-protocol_whitelist', 'file,udp,rtp', '-fflags', 'nobuffer', '-flags', 'low_delay', '-probesize', '32', '-analyzeduration', '0',
        '-i', sdp, '-vn', '-f', 's16le', '-ar', '8000', '-ac', '1', '-flush_packets', '1', 'pipe:1',
      ],
      { log, stdout: 'pipe' },
    );
    this.#ffmpeg = ff;
    ff.stdout!.on('data', (chunk: Buffer) => {
      this.#queue = this.#queue.length ? Buffer.concat([this.#queue, chunk]) : chunk;
      if (this.#queue.length > MAX_QUEUE_BYTES) this.#queue = this.#queue.subarray(this.#queue.length - MAX_QUEUE_BYTES);
    });
    // FFmpeg binds its RTP port while it reads the SDP; what the tap sends before that is lost.
    await new Promise((r) => setTimeout(r, 200));
    if (this.#closed) return;
    await tap.start({ ip: '127.0.0.1', port, rtcpPort });
  }

  /** Playing from the queue; false while it fills up again after running dry. */
  #primed = false;

  /** Adds the next 20 ms (if any) into `mix`. */
  takeInto(mix: Int32Array): void {
    // FFmpeg's output comes in bursts: start (and restart after running dry) with 60 ms queued, so
    // a late burst is absorbed instead of cutting holes of silence into the sound.
    if (!this.#primed && this.#queue.length >= PREBUFFER_BYTES) this.#primed = true;
    if (!this.#primed) return;
    if (this.#queue.length < FRAME * 2) {
      this.#primed = false;
      return;
    }
    for (let i = 0; i < FRAME; i++) mix[i]! += this.#queue.readInt16LE(i * 2);
    this.#queue = this.#queue.subarray(FRAME * 2);
    this.#drain();
  }

  #lowest = Number.POSITIVE_INFINITY;
  #frames = 0;

  /**
   * A start-up burst (or the decoder outpacing our 20 ms clock) leaves audio queued that never
   * plays out: every later word reaches the caller that much later (70 to 225 ms measured by
   * `npm run bench -- sip` without this). When even the emptiest moment of the last second had
   * more than the prebuffer queued, the excess is standing delay, not a burst to absorb: drop it.
   */
  #drain(): void {
    this.#lowest = Math.min(this.#lowest, this.#queue.length);
    if (++this.#frames < DRAIN_WINDOW) return;
    const excess = this.#lowest - PREBUFFER_BYTES;
    if (excess >= FRAME * 2) this.#queue = this.#queue.subarray(excess & ~1);
    this.#lowest = Number.POSITIVE_INFINITY;
    this.#frames = 0;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#tap?.close();
    await this.#ffmpeg?.stop(500);
    if (this.#dir) fs.rmSync(this.#dir, { recursive: true, force: true });
  }
}

export class CallMix {
  readonly #room: MixRoom;
  readonly #self: string;
  readonly #codec: CallCodec;
  readonly #send: (payload: Buffer) => void;
  readonly #log: Logger;
  readonly #decoders = new Map<string, TrackDecoder>();
  #timer: NodeJS.Timeout | undefined;
  #started = 0;
  #sent = 0;
  #closed = false;
  readonly #onChange = () => this.#sync();

  constructor(opts: { room: MixRoom; selfIdentity: string; codec: CallCodec; send: (payload: Buffer) => void; log: Logger }) {
    this.#room = opts.room;
    this.#self = opts.selfIdentity;
    this.#codec = opts.codec;
    this.#send = opts.send;
    this.#log = opts.log;
  }

  start(): void {
    this.#room.on('@trackpublished', this.#onChange);
    this.#room.on('@trackunpublished', this.#onChange);
    this.#room.on('@participantleft', this.#onChange);
    this.#sync();
    this.#started = Date.now();
    // A 10 ms tick that sends every packet due: timers run late, the count of packets does not.
    this.#timer = setInterval(() => this.#tick(), 10);
  }

  #tracks(): PublishedTrack[] {
    const out: PublishedTrack[] = [];
    for (const info of this.#room.participants()) {
      if (info.identity === this.#self) continue;
      let p: Participant;
      try {
        p = this.#room.participant(info.identity);
      } catch {
        continue; // left meanwhile
      }
      for (const t of p.tracks) if (t.producer.kind === 'audio' && !t.producer.closed) out.push(t);
    }
    return out;
  }

  #sync(): void {
    if (this.#closed) return;
    const want = new Map(this.#tracks().map((t) => [t.info.sid, t]));
    for (const [sid, d] of this.#decoders) {
      if (want.has(sid)) continue;
      this.#decoders.delete(sid);
      d.close().catch((err: unknown) => this.#log.warn({ err }, 'closing a mix decoder failed'));
    }
    for (const [sid, track] of want) {
      if (this.#decoders.has(sid)) continue;
      const d = new TrackDecoder();
      this.#decoders.set(sid, d);
      d.open(this.#room, track, this.#log).catch((err: unknown) => {
        this.#log.warn({ err, track: sid }, 'a track could not join the call mix');
        if (this.#decoders.get(sid) === d) this.#decoders.delete(sid);
        d.close().catch(() => undefined);
      });
    }
  }

  #tick(): void {
    const due = Math.floor((Date.now() - this.#started) / 20);
    // After a stall (a busy event loop) skip ahead rather than send a burst the phone would drop.
    if (due - this.#sent > 10) this.#sent = due - 1;
    while (this.#sent < due) {
      this.#sent++;
      const mix = new Int32Array(FRAME);
      for (const d of this.#decoders.values()) d.takeInto(mix);
      const pcm = Int16Array.from(mix, (v) => Math.max(-32768, Math.min(32767, v)));
      this.#send(encodeG711(pcm, this.#codec));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#room.off('@trackpublished', this.#onChange);
    this.#room.off('@trackunpublished', this.#onChange);
    this.#room.off('@participantleft', this.#onChange);
    await Promise.all([...this.#decoders.values()].map((d) => d.close()));
    this.#decoders.clear();
  }
}
