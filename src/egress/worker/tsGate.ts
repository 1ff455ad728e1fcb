// Where an MPEG-TS reader may start: at a video keyframe, with the tables before it.
//
// Every sink FFmpeg (file, each RTMP destination, each restart of one) reads the encoder's TS from
// some point on. Started at a keyframe (with audio from the same instant), its probe finds the
// picture's parameters in the first packets and ends at once (ffmpegArgs.ts reads with
// scan_all_pmts off), and a late-added destination never fails on a picture it cannot decode.
import { hasAdaptation, payloadOffset, pidOf, startsUnit, TS_PACKET as PACKET, TS_SYNC } from '../../media/mpegts.ts';

const PAT_PID = 0;
/** H.264, HEVC and MPEG-2 video stream types in a PMT. */
const VIDEO_STREAM_TYPES = new Set([0x1b, 0x24, 0x02]);

/** random_access_indicator of the adaptation field: the muxer sets it on keyframes. */
function randomAccess(p: Buffer): boolean {
  return hasAdaptation(p) && p[4]! > 0 && (p[5]! & 0x40) !== 0;
}

export class TsKeyframeGate {
  #open = false;
  #rest: Buffer = Buffer.alloc(0);
  #pmtPids = new Set<number>();
  /** Unknown until the PMT has been read; null when the program has no video. */
  #videoPid: number | null | undefined;

  /** What of `chunk` to pass on now. */
  push(chunk: Buffer): Buffer {
    if (this.#open) return chunk;
    const data = this.#rest.length > 0 ? Buffer.concat([this.#rest, chunk]) : chunk;
    const whole = data.length - (data.length % PACKET);
    this.#rest = Buffer.from(data.subarray(whole));
    const kept: Buffer[] = [];
    for (let off = 0; off < whole; off += PACKET) {
      const p = data.subarray(off, off + PACKET);
      if (this.#open) {
        kept.push(p);
        continue;
      }
      if (p[0] !== TS_SYNC) {
        // Not the TS we expect: stop filtering rather than corrupt the stream.
        this.#open = true;
        kept.push(data.subarray(off));
        this.#rest = Buffer.alloc(0);
        return Buffer.concat(kept);
      }
      const pid = pidOf(p);
      const unitStart = startsUnit(p);
      if (pid === PAT_PID) {
        if (unitStart) this.#readPat(p);
        kept.push(p);
      } else if (this.#pmtPids.has(pid)) {
        if (unitStart) this.#readPmt(p);
        kept.push(p);
      } else if (this.#videoPid === null || (pid === this.#videoPid && unitStart && randomAccess(p))) {
        this.#open = true; // no video at all, or its first keyframe
        kept.push(p);
      }
    }
    if (this.#open && this.#rest.length > 0) {
      kept.push(this.#rest);
      this.#rest = Buffer.alloc(0);
    }
    return Buffer.concat(kept);
  }

  #section(p: Buffer): Buffer | undefined {
    const start = payloadOffset(p);
    if (start >= PACKET) return undefined;
    const pointer = p[start]!;
    const s = p.subarray(start + 1 + pointer);
    if (s.length < 3) return undefined;
    const length = ((s[1]! & 0x0f) << 8) | s[2]!;
    return s.subarray(0, Math.min(s.length, 3 + length));
  }

  #readPat(p: Buffer): void {
    const s = this.#section(p);
    if (!s || s[0] !== 0x00) return;
    for (let i = 8; i + 4 <= s.length - 4; i += 4) {
      const program = s.readUInt16BE(i);
      if (program !== 0) this.#pmtPids.add(((s[i + 2]! & 0x1f) << 8) | s[i + 3]!);
    }
  }

  #readPmt(p: Buffer): void {
    const s = this.#section(p);
    if (!s || s[0] !== 0x02 || s.length < 12) return;
    const end = s.length - 4; // CRC
    let i = 12 + (((s[10]! & 0x0f) << 8) | s[11]!);
    let video: number | null = null;
    while (i + 5 <= end) {
      const type = s[i]!;
      const pid = ((s[i + 1]! & 0x1f) << 8) | s[i + 2]!;
      if (video === null && VIDEO_STREAM_TYPES.has(type)) video = pid;
      i += 5 + (((s[i + 3]! & 0x0f) << 8) | s[i + 4]!);
    }
    this.#videoPid = video;
  }
}
