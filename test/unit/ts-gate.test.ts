// The MPEG-TS keyframe gate: a sink's input starts at a video keyframe with the tables before it;
// after that everything passes untouched (also when the stream has no video, or is not TS).
import { describe, expect, it } from 'vitest';
import { TsKeyframeGate } from '../../src/egress/worker/tsGate.ts';

const VIDEO = 0x100;
const AUDIO = 0x101;
const PMT = 0x1000;

function packet(pid: number, opts: { unitStart?: boolean; keyframe?: boolean; payload?: number[] } = {}): Buffer {
  const p = Buffer.alloc(188, 0xff);
  p[0] = 0x47;
  p[1] = (opts.unitStart ? 0x40 : 0) | ((pid >> 8) & 0x1f);
  p[2] = pid & 0xff;
  let off = 4;
  if (opts.keyframe) {
    p[3] = 0x30; // adaptation field + payload
    p[4] = 1;
    p[5] = 0x40; // random_access_indicator
    off = 6;
  } else {
    p[3] = 0x10;
  }
  if (opts.payload) Buffer.from(opts.payload).copy(p, off);
  return p;
}

/** PAT naming one program whose PMT is at 0x1000. */
const pat = () => packet(0, { unitStart: true, payload: [0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xe0 | (PMT >> 8), PMT & 0xff, 0, 0, 0, 0] });
/** PMT with the given (stream type, pid) entries. */
function pmt(streams: [number, number][]): Buffer {
  const es = streams.flatMap(([type, pid]) => [type, 0xe0 | (pid >> 8), pid & 0xff, 0xf0, 0]);
  const length = 9 + es.length + 4;
  return packet(PMT, { unitStart: true, payload: [0, 0x02, 0xb0, length, 0, 1, 0xc1, 0, 0, 0xe0 | (VIDEO >> 8), VIDEO & 0xff, 0xf0, 0, ...es, 0, 0, 0, 0] });
}

const pidsOf = (b: Buffer) => Array.from({ length: b.length / 188 }, (_, i) => ((b[i * 188 + 1]! & 0x1f) << 8) | b[i * 188 + 2]!);

describe('TsKeyframeGate', () => {
  it('starts at the first video keyframe, keeping the tables, across awkward chunk splits', () => {
    const stream = Buffer.concat([
      pat(), pmt([[0x1b, VIDEO], [0x0f, AUDIO]]),
      packet(AUDIO, { unitStart: true }), // audio before any picture: dropped
      packet(VIDEO, { unitStart: true }), // an inter frame: dropped
      packet(VIDEO), // its continuation: dropped
      packet(VIDEO, { unitStart: true, keyframe: true }),
      packet(AUDIO, { unitStart: true }),
      packet(VIDEO),
    ]);
    const gate = new TsKeyframeGate();
    const out = Buffer.concat([stream.subarray(0, 100), stream.subarray(100, 700), stream.subarray(700)].map((c) => gate.push(c)));
    expect(pidsOf(out)).toEqual([0, PMT, VIDEO, AUDIO, VIDEO]);
    const later = packet(AUDIO, { unitStart: true });
    expect(gate.push(later)).toBe(later);
  });

  it('opens at once for a program without video, and on anything that is not TS', () => {
    const gate = new TsKeyframeGate();
    const out = gate.push(Buffer.concat([pat(), pmt([[0x0f, VIDEO]]), packet(VIDEO, { unitStart: true })]));
    expect(pidsOf(out)).toEqual([0, PMT, VIDEO]);
    const junk = Buffer.alloc(400, 0x11);
    expect(new TsKeyframeGate().push(junk)).toEqual(junk);
  });
});
