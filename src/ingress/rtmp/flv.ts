// What an RTMP publisher sends, read from FLV tag bodies: codec, picture size, B-frames, audio
// format. Pure functions, so the decisions built on them are unit-tested without a server.
import type AVPacket from 'node-media-server/src/core/avpacket.js';
import { parseH264Sps } from 'node-media-server/src/protocol/sps_info.js';

export const FLV = { AUDIO: 8, VIDEO: 9, SCRIPT: 18 } as const;
/** AVPacket.flags as node-media-server sets them. */
export const PKT = { AUDIO_HEADER: 0, AUDIO: 1, VIDEO_HEADER: 2, KEYFRAME: 3, INTER: 4, METADATA: 5 } as const;

/** FLV video codec ids (plus the enhanced-RTMP FourCCs node-media-server reports as numbers). */
const VIDEO_CODECS: Record<number, string> = {
  2: 'Sorenson H.263',
  3: 'Screen video',
  4: 'VP6',
  5: 'VP6 alpha',
  6: 'Screen video 2',
  7: 'H.264',
  12: 'HEVC',
  0x68766331: 'HEVC', // 'hvc1'
  0x61763031: 'AV1', // 'av01'
  0x76703039: 'VP9', // 'vp09'
};
const AUDIO_CODECS: Record<number, { name: string; mime: string }> = {
  0: { name: 'PCM', mime: 'audio/pcm' },
  1: { name: 'ADPCM', mime: 'audio/adpcm' },
  2: { name: 'MP3', mime: 'audio/mpeg' },
  3: { name: 'PCM', mime: 'audio/pcm' },
  4: { name: 'Nellymoser', mime: 'audio/nellymoser' },
  5: { name: 'Nellymoser', mime: 'audio/nellymoser' },
  6: { name: 'Nellymoser', mime: 'audio/nellymoser' },
  7: { name: 'G.711 A-law', mime: 'audio/PCMA' },
  8: { name: 'G.711 mu-law', mime: 'audio/PCMU' },
  10: { name: 'AAC', mime: 'audio/aac' },
  11: { name: 'Speex', mime: 'audio/speex' },
  14: { name: 'MP3', mime: 'audio/mpeg' },
};

export const H264_CODEC_ID = 7;

export function videoCodecName(id: number): string {
  return VIDEO_CODECS[id] ?? `FLV video codec ${id}`;
}

export function audioCodec(id: number): { name: string; mime: string } {
  return AUDIO_CODECS[id] ?? { name: `FLV audio codec ${id}`, mime: 'audio/unknown' };
}

export function body(p: AVPacket): Buffer {
  return p.data.subarray(0, p.size);
}

/**
 * Width, height and profile from an AVC sequence header (FLV: 5 bytes of tag header, then the
 * AVCDecoderConfigurationRecord with the first SPS at offset 8 of the record).
 */
export function parseAvcSequenceHeader(tag: Buffer): { width: number; height: number; profile: number; level: number } | undefined {
  const rec = tag.subarray(5);
  if (rec.length < 8 || rec[0] !== 1) return undefined;
  const spsCount = rec[5]! & 0x1f;
  if (spsCount < 1) return undefined;
  const spsLen = rec.readUInt16BE(6);
  const sps = rec.subarray(8, 8 + spsLen);
  if (sps.length !== spsLen) return undefined;
  const size = parseH264Sps(sps);
  return size ? { ...size, profile: rec[1]!, level: rec[3]! } : undefined;
}

const AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
const FLV_RATES = [5500, 11025, 22050, 44100];

/** Sample rate and channels: from the AAC AudioSpecificConfig when there is one, else the FLV flags. */
export function parseAudioHeader(tag: Buffer): { sampleRate: number; channels: number } {
  const flags = tag[0] ?? 0;
  const fallback = { sampleRate: FLV_RATES[(flags >> 2) & 3]!, channels: (flags & 1) + 1 };
  if (flags >> 4 !== 10 || tag.length < 4 || tag[1] !== 0) return fallback;
  const asc = tag.readUInt16BE(2);
  const rate = AAC_RATES[(asc >> 7) & 0x0f];
  const channels = (asc >> 3) & 0x0f;
  return { sampleRate: rate ?? fallback.sampleRate, channels: channels || fallback.channels };
}

/**
 * A frame whose presentation time differs from its decode time means frames are reordered, i.e.
 * the stream has B-frames (x264 gives even the first keyframe a composition offset then).
 */
export function hasReordering(p: AVPacket): boolean {
  return p.codec_type === FLV.VIDEO && (p.flags === PKT.KEYFRAME || p.flags === PKT.INTER) && p.pts !== p.dts;
}

/**
 * Measures the incoming stream over a sliding window: frame rate, bit rates and keyframe interval,
 * from the packets' own timestamps (not arrival times, which bunch up under network jitter).
 */
export class InputMeter {
  #videoBytes = 0;
  #audioBytes = 0;
  #frames = 0;
  #firstVideoDts: number | undefined;
  #lastVideoDts = 0;
  #firstAudioDts: number | undefined;
  #lastAudioDts = 0;
  #lastKeyDts: number | undefined;
  /** Milliseconds between the last two keyframes. */
  gopMs = 0;

  add(p: AVPacket): void {
    if (p.codec_type === FLV.VIDEO && (p.flags === PKT.KEYFRAME || p.flags === PKT.INTER)) {
      this.#firstVideoDts ??= p.dts;
      this.#lastVideoDts = p.dts;
      this.#videoBytes += p.size;
      this.#frames++;
      if (p.flags === PKT.KEYFRAME) {
        if (this.#lastKeyDts !== undefined && p.dts > this.#lastKeyDts) this.gopMs = p.dts - this.#lastKeyDts;
        this.#lastKeyDts = p.dts;
      }
    } else if (p.codec_type === FLV.AUDIO && p.flags === PKT.AUDIO) {
      this.#firstAudioDts ??= p.dts;
      this.#lastAudioDts = p.dts;
      this.#audioBytes += p.size;
    }
  }

  /** Rates since the last call, then starts a new window. */
  take(): { framerate: number; videoBitrate: number; audioBitrate: number } {
    const vSpan = this.#firstVideoDts === undefined ? 0 : (this.#lastVideoDts - this.#firstVideoDts) / 1000;
    const aSpan = this.#firstAudioDts === undefined ? 0 : (this.#lastAudioDts - this.#firstAudioDts) / 1000;
    const out = {
      framerate: vSpan > 0 ? Math.round(((this.#frames - 1) / vSpan) * 100) / 100 : 0,
      videoBitrate: vSpan > 0 ? Math.round((this.#videoBytes * 8) / vSpan) : 0,
      audioBitrate: aSpan > 0 ? Math.round((this.#audioBytes * 8) / aSpan) : 0,
    };
    this.#videoBytes = this.#audioBytes = this.#frames = 0;
    this.#firstVideoDts = this.#firstAudioDts = undefined;
    return out;
  }
}

/**
 * An FLV onMetaData tag with the given numbers. FFmpeg's FLV demuxer takes the picture size from
 * onMetaData (its RTP muxer refuses H.264 without one when copying), but it ignores the
 * "@setDataFrame" form RTMP publishers send, so the pipeline writes its own from what was probed.
 */
export function metadataTag(fields: Record<string, number>): Buffer {
  const parts: Buffer[] = [];
  const str = (v: string) => {
    const b = Buffer.alloc(2 + Buffer.byteLength(v));
    b.writeUInt16BE(Buffer.byteLength(v));
    b.write(v, 2);
    return b;
  };
  parts.push(Buffer.from([0x02]), str('onMetaData'));
  const entries = Object.entries(fields);
  const head = Buffer.alloc(5);
  head[0] = 0x08; // ECMA array
  head.writeUInt32BE(entries.length, 1);
  parts.push(head);
  for (const [k, v] of entries) {
    const num = Buffer.alloc(9);
    num[0] = 0x00;
    num.writeDoubleBE(v, 1);
    parts.push(str(k), num);
  }
  parts.push(Buffer.from([0x00, 0x00, 0x09]));
  const body = Buffer.concat(parts);
  const tag = Buffer.alloc(11 + body.length + 4);
  tag[0] = FLV.SCRIPT;
  tag.writeUIntBE(body.length, 1, 3);
  body.copy(tag, 11);
  tag.writeUInt32BE(11 + body.length, 11 + body.length);
  return tag;
}
