// The last keyframe interval of a server-fed video track (RTMP and URL ingress), kept in the
// gateway so that a new egress starts on a picture at once. These sources cannot make a keyframe
// on request (an RTMP encoder such as OBS sends one every 250 frames, 8.3 s, by default; the
// ingest's own encoder one every 2 s), and a mediasoup consumer only starts at the next one: an
// egress tap of such a track is fed from here instead (src/egress/EgressTaps.ts), the cached
// pictures first, then the live packets, in one continuous sequence.
import type { types } from 'mediasoup';
import { KeyframeTracker, parseRtp, videoCodecOf } from './rtp.ts';

/** Bounds of the cache: a longer keyframe interval (or a bigger one) is not cached. */
const MAX_CACHE_BYTES = 24 * 1024 * 1024;
const MAX_CACHE_PACKETS = 40_000;

/** What an egress tap reads from a cached track. */
export interface TrackRelay {
  /** Packets from the start of the last keyframe on, oldest first (empty before the first keyframe). */
  recent(): Buffer[];
  /** Every later packet, in order, until the returned function is called. */
  subscribe(fn: (packet: Buffer) => void): () => void;
}

const APPDATA_KEY = 'roomgate.relay';

export function attachRelay(producer: types.Producer, relay: TrackRelay): void {
  producer.appData[APPDATA_KEY] = relay;
}

export function relayOf(producer: types.Producer): TrackRelay | undefined {
  const r = producer.appData[APPDATA_KEY];
  return r && typeof r === 'object' && 'recent' in r && 'subscribe' in r ? (r as TrackRelay) : undefined;
}

/** One RTP stream (one SSRC): keeps its packets from the last decodable picture on and fans them out. */
export class KeyframeCache implements TrackRelay {
  readonly #tracker: KeyframeTracker;
  #packets: Buffer[] = [];
  #bytes = 0;
  /** Index in #packets where the picture being received starts. */
  #pictureStart = 0;
  /** #packets starts with a keyframe. */
  #keyed = false;
  readonly #listeners = new Set<(packet: Buffer) => void>();

  constructor(mimeType: string) {
    this.#tracker = new KeyframeTracker(videoCodecOf(mimeType));
  }

  push(packet: Buffer): void {
    const h = parseRtp(packet);
    if (!h) return;
    const { newPicture, keyframe } = this.#tracker.push(h, packet);
    if (newPicture) {
      if (!this.#keyed) this.#drop(this.#packets.length); // nothing decodable kept: only the current picture
      this.#pictureStart = this.#packets.length;
    }
    this.#packets.push(packet);
    this.#bytes += packet.length;
    if (keyframe) {
      this.#drop(this.#pictureStart);
      this.#keyed = true;
    } else if (this.#bytes > MAX_CACHE_BYTES || this.#packets.length > MAX_CACHE_PACKETS) {
      this.#drop(this.#packets.length);
      this.#keyed = false;
    }
    for (const fn of this.#listeners) fn(packet);
  }

  #drop(count: number): void {
    if (count <= 0) return;
    for (const p of this.#packets.splice(0, count)) this.#bytes -= p.length;
    this.#pictureStart = Math.max(0, this.#pictureStart - count);
  }

  recent(): Buffer[] {
    return this.#keyed ? this.#packets.slice() : [];
  }

  subscribe(fn: (packet: Buffer) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  clear(): void {
    this.#packets = [];
    this.#bytes = 0;
    this.#keyed = false;
    this.#listeners.clear();
  }
}
