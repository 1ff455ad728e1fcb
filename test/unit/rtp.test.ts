// RTP reading for the egress path: where a decodable picture starts (H.264 IDR with its parameter
// sets, in single NALs, STAP-A or FU-A; VP8 keyframes), and the gateway's keyframe cache.
import { describe, expect, it } from 'vitest';
import { h264NalTypes, KeyframeTracker, parseRtp, rewriteRtp, senderReport, vp8KeyframeStart } from '../../src/media/rtp.ts';
import { KeyframeCache } from '../../src/media/rtpRelay.ts';

let seq = 0;
function rtp(ts: number, payload: number[], opts: { marker?: boolean; ssrc?: number; csrc?: number; ext?: boolean } = {}): Buffer {
  const csrc = opts.csrc ?? 0;
  const ext = opts.ext ? Buffer.from([0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]) : Buffer.alloc(0);
  const h = Buffer.alloc(12 + csrc * 4);
  h[0] = 0x80 | (opts.ext ? 0x10 : 0) | csrc;
  h[1] = (opts.marker ? 0x80 : 0) | 102;
  h.writeUInt16BE(seq++ & 0xffff, 2);
  h.writeUInt32BE(ts >>> 0, 4);
  h.writeUInt32BE(opts.ssrc ?? 1234, 8);
  return Buffer.concat([h, ext, Buffer.from(payload)]);
}

const nal = (type: number, len = 4) => [0x60 | type, ...Array(len).fill(0xab)];
const stapA = (...nals: number[][]) => [24, ...nals.flatMap((n) => [n.length >> 8, n.length & 0xff, ...n])];
const fuA = (type: number, start: boolean, end = false) => [0x60 | 28, (start ? 0x80 : 0) | (end ? 0x40 : 0) | type, 1, 2, 3];

function feed(tracker: KeyframeTracker, packets: Buffer[]): boolean[] {
  return packets.map((p) => tracker.push(parseRtp(p)!, p).keyframe);
}

describe('RTP header', () => {
  it('reads the payload after CSRCs and a header extension, and refuses RTCP', () => {
    const p = rtp(90000, [0x65, 1, 2], { csrc: 2, ext: true });
    const h = parseRtp(p)!;
    expect(h).toMatchObject({ payloadType: 102, timestamp: 90000, ssrc: 1234 });
    expect(p[h.payloadOffset]).toBe(0x65);
    expect(parseRtp(senderReport(1, Date.now(), 0, 0, 0))).toBeUndefined();
    expect(parseRtp(Buffer.from([0x80, 0x66]))).toBeUndefined();
  });

  it('rewrites payload type, SSRC and timestamp, keeping the marker', () => {
    const p = rtp(5, [1], { marker: true });
    const h = parseRtp(rewriteRtp(p, { payloadType: 96, ssrc: 7, timestamp: 2 ** 32 + 3 }))!;
    expect(h).toMatchObject({ payloadType: 96, ssrc: 7, timestamp: 3, marker: true });
  });
});

describe('H.264 keyframes', () => {
  it('lists the NAL units a payload starts', () => {
    expect(h264NalTypes(Buffer.from(nal(5)))).toEqual([5]);
    expect(h264NalTypes(Buffer.from(stapA(nal(7), nal(8), nal(5))))).toEqual([7, 8, 5]);
    expect(h264NalTypes(Buffer.from(fuA(5, true)))).toEqual([5]);
    expect(h264NalTypes(Buffer.from(fuA(5, false)))).toEqual([]);
  });

  it('an IDR counts once its SPS and PPS were seen, whatever the packetization', () => {
    const t = new KeyframeTracker('h264');
    // Mid-GOP start: P slices, then an IDR without parameter sets ever seen: not decodable.
    expect(feed(t, [rtp(0, nal(1)), rtp(3000, nal(5))])).toEqual([false, false]);
    // SPS, PPS as single NALs then a fragmented IDR: the first IDR fragment marks the picture.
    expect(feed(t, [rtp(6000, nal(7)), rtp(6000, nal(8)), rtp(6000, fuA(5, true)), rtp(6000, fuA(5, false, true))])).toEqual([false, false, true, false]);
    // Later IDRs (parameter sets known from before) and a STAP-A with all three.
    expect(feed(t, [rtp(9000, nal(1)), rtp(12000, nal(5))])).toEqual([false, true]);
    const u = new KeyframeTracker('h264');
    expect(feed(u, [rtp(1, stapA(nal(7), nal(8), nal(5)))])).toEqual([true]);
  });

  it('VP8: S bit, partition 0 and the frame header P bit, after the extensions', () => {
    expect(vp8KeyframeStart(Buffer.from([0x10, 0x00]))).toBe(true);
    expect(vp8KeyframeStart(Buffer.from([0x10, 0x01]))).toBe(false);
    expect(vp8KeyframeStart(Buffer.from([0x00, 0x00]))).toBe(false);
    // X with a 15-bit picture id, TL0PICIDX and TID: the frame header is at offset 6.
    expect(vp8KeyframeStart(Buffer.from([0x90, 0xe0, 0x81, 0x02, 0x05, 0x40, 0x00]))).toBe(true);
    expect(vp8KeyframeStart(Buffer.from([0x90, 0xe0, 0x81, 0x02, 0x05, 0x40, 0x01]))).toBe(false);
  });
});

describe('keyframe cache', () => {
  it('holds the pictures from the last keyframe on, and nothing before the first', () => {
    const c = new KeyframeCache('video/H264');
    c.push(rtp(0, nal(1)));
    c.push(rtp(3000, nal(1)));
    expect(c.recent()).toEqual([]);
    const key = [rtp(6000, nal(7)), rtp(6000, nal(8)), rtp(6000, nal(5))];
    for (const p of key) c.push(p);
    c.push(rtp(9000, nal(1)));
    expect(c.recent().map((p) => parseRtp(p)!.timestamp)).toEqual([6000, 6000, 6000, 9000]);
    const next = [rtp(12000, nal(7)), rtp(12000, nal(8)), rtp(12000, nal(5)), rtp(15000, nal(1))];
    const live: number[] = [];
    const off = c.subscribe((p) => live.push(parseRtp(p)!.timestamp));
    for (const p of next) c.push(p);
    off();
    c.push(rtp(18000, nal(1)));
    expect(c.recent().map((p) => parseRtp(p)!.timestamp)).toEqual([12000, 12000, 12000, 15000, 18000]);
    expect(live).toEqual([12000, 12000, 12000, 15000]);
  });
});
