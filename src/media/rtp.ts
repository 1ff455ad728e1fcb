// RTP packets as the egress path needs them (RFC 3550 header, RFC 6184 H.264 and RFC 7741 VP8
// payloads): where a decodable picture starts, which H.264 parameter sets a packet carries, header
// rewrites, and RTCP sender reports. Pure functions, used by the ingest's keyframe cache
// (src/media/rtpRelay.ts) and the egress worker's RTP gate (src/egress/worker/tapInput.ts).

export interface RtpHeader {
  payloadType: number;
  marker: boolean;
  seq: number;
  timestamp: number;
  ssrc: number;
  /** Where the payload starts (after CSRCs and the header extension). */
  payloadOffset: number;
  /** Where the payload ends (before any padding). */
  payloadEnd: number;
}

/** The header of an RTP packet, or undefined when `buf` is not one (RTCP, too short, version ≠ 2). */
export function parseRtp(buf: Buffer): RtpHeader | undefined {
  if (buf.length < 12 || buf[0]! >> 6 !== 2) return undefined;
  const pt = buf[1]! & 0x7f;
  // RTCP packet types 200–204 show up here as 72–76 with the marker bit set (RFC 5761).
  if (pt >= 72 && pt <= 76 && buf[1]! & 0x80) return undefined;
  let off = 12 + (buf[0]! & 0x0f) * 4;
  if (buf[0]! & 0x10) {
    if (off + 4 > buf.length) return undefined;
    off += 4 + buf.readUInt16BE(off + 2) * 4;
  }
  let end = buf.length;
  if (buf[0]! & 0x20) end -= buf[buf.length - 1]!;
  if (off > end) return undefined;
  return { payloadType: pt, marker: (buf[1]! & 0x80) !== 0, seq: buf.readUInt16BE(2), timestamp: buf.readUInt32BE(4), ssrc: buf.readUInt32BE(8), payloadOffset: off, payloadEnd: end };
}

/** A copy of `buf` with the given header fields replaced. */
export function rewriteRtp(buf: Buffer, set: { payloadType?: number; seq?: number; timestamp?: number; ssrc?: number }): Buffer {
  const out = Buffer.from(buf);
  if (set.payloadType !== undefined) out[1] = (out[1]! & 0x80) | (set.payloadType & 0x7f);
  if (set.seq !== undefined) out.writeUInt16BE(set.seq & 0xffff, 2);
  if (set.timestamp !== undefined) out.writeUInt32BE(set.timestamp >>> 0, 4);
  if (set.ssrc !== undefined) out.writeUInt32BE(set.ssrc >>> 0, 8);
  return out;
}

export const H264_NAL = { IDR: 5, SPS: 7, PPS: 8, STAP_A: 24, FU_A: 28 } as const;

/**
 * The H.264 NAL unit types that start in this payload: a single NAL, each unit of a STAP-A, or
 * the unit an FU-A begins (its continuations start none).
 */
export function h264NalTypes(payload: Buffer): number[] {
  if (payload.length < 1) return [];
  const type = payload[0]! & 0x1f;
  if (type >= 1 && type <= 23) return [type];
  if (type === H264_NAL.STAP_A) {
    const types: number[] = [];
    for (let i = 1; i + 2 < payload.length; ) {
      const size = payload.readUInt16BE(i);
      if (size === 0 || i + 2 + size > payload.length) break;
      types.push(payload[i + 2]! & 0x1f);
      i += 2 + size;
    }
    return types;
  }
  if (type === H264_NAL.FU_A && payload.length >= 2 && payload[1]! & 0x80) return [payload[1]! & 0x1f];
  return [];
}

/** Whether this VP8 payload starts a keyframe (RFC 7741: S=1, partition 0, P bit 0 in the frame header). */
export function vp8KeyframeStart(payload: Buffer): boolean {
  if (payload.length < 1) return false;
  const b0 = payload[0]!;
  if (!(b0 & 0x10) || (b0 & 0x07) !== 0) return false;
  let i = 1;
  if (b0 & 0x80) {
    if (payload.length < 2) return false;
    const x = payload[1]!;
    i = 2;
    if (x & 0x80) i += i < payload.length && payload[i]! & 0x80 ? 2 : 1; // PictureID, 7 or 15 bits
    if (x & 0x40) i += 1; // TL0PICIDX
    if (x & 0x30) i += 1; // TID/Y/KEYIDX
  }
  return i < payload.length && (payload[i]! & 0x01) === 0;
}

export type VideoCodecName = 'h264' | 'vp8' | 'other';

export function videoCodecOf(mimeType: string): VideoCodecName {
  const m = mimeType.toLowerCase();
  return m === 'video/h264' ? 'h264' : m === 'video/vp8' ? 'vp8' : 'other';
}

/**
 * Follows a video RTP stream picture by picture (a picture = the packets of one timestamp) and
 * tells where a decoder can start: the first packet of a picture that is a keyframe, for H.264
 * an IDR whose SPS and PPS came in the same picture or earlier in the stream.
 */
export class KeyframeTracker {
  readonly #codec: VideoCodecName;
  #ts: number | undefined;
  #types = new Set<number>();
  #sawSps = false;
  #sawPps = false;

  constructor(codec: VideoCodecName) {
    this.#codec = codec;
  }

  /** Feeds one packet; true when the picture it belongs to has turned out to be a decodable start. */
  push(h: RtpHeader, buf: Buffer): { newPicture: boolean; keyframe: boolean } {
    const payload = buf.subarray(h.payloadOffset, h.payloadEnd);
    const newPicture = this.#ts !== h.timestamp;
    if (newPicture) {
      this.#ts = h.timestamp;
      this.#types.clear();
    }
    if (this.#codec === 'vp8') return { newPicture, keyframe: vp8KeyframeStart(payload) };
    if (this.#codec !== 'h264') return { newPicture, keyframe: newPicture };
    const before = this.#types.has(H264_NAL.IDR);
    for (const t of h264NalTypes(payload)) {
      this.#types.add(t);
      if (t === H264_NAL.SPS) this.#sawSps = true;
      if (t === H264_NAL.PPS) this.#sawPps = true;
    }
    return { newPicture, keyframe: !before && this.#types.has(H264_NAL.IDR) && this.#sawSps && this.#sawPps };
  }
}

/** NTP timestamp (RFC 3550 §4) of a wall-clock time in ms: seconds since 1900 and a 32-bit fraction. */
function ntp(ms: number): { sec: number; frac: number } {
  const sec = Math.floor(ms / 1000) + 2_208_988_800;
  const frac = Math.floor(((ms % 1000) / 1000) * 2 ** 32);
  return { sec: sec >>> 0, frac: frac >>> 0 };
}

/** An RTCP sender report without report blocks: it maps the stream's RTP clock to the wall clock. */
export function senderReport(ssrc: number, wallMs: number, rtpTimestamp: number, packets: number, octets: number): Buffer {
  const b = Buffer.alloc(28);
  b[0] = 0x80;
  b[1] = 200;
  b.writeUInt16BE(6, 2); // length in 32-bit words minus one
  b.writeUInt32BE(ssrc >>> 0, 4);
  const t = ntp(wallMs);
  b.writeUInt32BE(t.sec, 8);
  b.writeUInt32BE(t.frac, 12);
  b.writeUInt32BE(rtpTimestamp >>> 0, 16);
  b.writeUInt32BE(packets >>> 0, 20);
  b.writeUInt32BE(octets >>> 0, 24);
  return b;
}
