// An egress tap of a cached server-fed track (src/media/rtpRelay.ts): the gateway sends the last
// keyframe interval and then the live packets from its own UDP socket, so the worker's first
// packet is a decodable picture whatever the source's keyframe interval.
//
// The cached pictures are older than the request. `preroll` sends them with their own times: a
// copied recording (track egress, passthrough) starts with them, up to one keyframe interval before
// the request; an encoder decodes them and drops what precedes the request (ffmpegArgs.ts
// encoderReplay); the compositor stamps them with their arrival and shows the newest. `live` sends
// none: the worker starts at the source's next keyframe.
import dgram from 'node:dgram';
import { rewriteRtp } from '../media/rtp.ts';
import type { TrackRelay } from '../media/rtpRelay.ts';
import type { ReplayMode } from './contract.ts';

/**
 * Replay pace: this many packets per millisecond at most (about 35 MB/s). FFmpeg reads its socket
 * only as fast as it decodes, so the burst waits in its receive buffer (tapInput.ts asks for 4 MB).
 */
const REPLAY_BATCH = 32;

export class RelayFeed {
  readonly #socket: dgram.Socket;
  readonly #relay: TrackRelay;
  readonly #payloadType: number;
  readonly #ssrc: number;
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  private constructor(socket: dgram.Socket, relay: TrackRelay, payloadType: number, ssrc: number) {
    this.#socket = socket;
    this.#relay = relay;
    this.#payloadType = payloadType;
    this.#ssrc = ssrc;
  }

  /** Binds the sending socket now: the worker is told its port to accept only this sender. */
  static async open(ip: string, relay: TrackRelay, payloadType: number, ssrc: number): Promise<RelayFeed> {
    const socket = dgram.createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, ip, () => {
        socket.off('error', reject);
        socket.on('error', () => undefined); // the worker went away: its lease ends the session
        resolve();
      });
    });
    return new RelayFeed(socket, relay, payloadType, ssrc);
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** Sends the cached pictures, then every live packet, to the worker. */
  start(target: { ip: string; port: number }, mode: ReplayMode): void {
    if (this.#closed || this.#unsubscribe) return;
    const cached = mode === 'live' ? [] : this.#relay.recent();
    const queue: Buffer[] = [];
    let replaying = true;
    const send = (p: Buffer) => {
      if (this.#closed) return;
      this.#socket.send(rewriteRtp(p, { payloadType: this.#payloadType, ssrc: this.#ssrc }), target.port, target.ip);
    };
    // Subscribed in the same turn as the snapshot: the live packets continue it without a gap.
    this.#unsubscribe = this.#relay.subscribe((p) => (replaying ? queue.push(p) : send(p)));
    let i = 0;
    const next = () => {
      if (this.#closed) return;
      for (const end = Math.min(cached.length, i + REPLAY_BATCH); i < end; i++) send(cached[i]!);
      if (i < cached.length) {
        setTimeout(next, 1);
        return;
      }
      for (const p of queue.splice(0)) send(p);
      replaying = false;
    };
    next();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe?.();
    this.#socket.close();
  }
}
