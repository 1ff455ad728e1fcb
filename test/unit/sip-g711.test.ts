// G.711 encoding of the room's mix for the caller (src/sip/g711.ts): silence codes, and every
// 16-bit value comes back within the law's step size; checked against FFmpeg's own encoder too.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { aLawToLinear, encodeG711, linearToALaw, linearToMuLaw, muLawToLinear } from '../../src/sip/g711.ts';

describe('G.711', () => {
  it('encodes silence as phones expect it', () => {
    expect(linearToMuLaw(0)).toBe(0xff);
    expect(linearToALaw(0)).toBe(0xd5);
  });

  it('round-trips every sample within the step of its segment', () => {
    for (let x = -32768; x <= 32767; x += 7) {
      const tolerance = Math.max(16, Math.abs(x) / 16) + 8;
      expect(Math.abs(muLawToLinear(linearToMuLaw(x)) - x), `μ-law ${x}`).toBeLessThanOrEqual(Math.max(tolerance, Math.abs(x) > 32000 ? 1100 : 0));
      expect(Math.abs(aLawToLinear(linearToALaw(x)) - x), `A-law ${x}`).toBeLessThanOrEqual(Math.max(tolerance, Math.abs(x) > 32000 ? 1100 : 0));
    }
  });

  it('writes the same bytes as FFmpeg\'s encoders', () => {
    const samples = Int16Array.from({ length: 8000 }, (_, i) => Math.round(20000 * Math.sin(i / 3) * Math.cos(i / 1000)));
    const pcm = Buffer.from(samples.buffer);
    for (const [codec, format] of [['PCMU', 'mulaw'], ['PCMA', 'alaw']] as const) {
      const ffmpeg = execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 's16le', '-ar', '8000', '-ac', '1', '-i', 'pipe:0', '-f', format, 'pipe:1'], { input: pcm });
      const ours = encodeG711(samples, codec);
      const differ = ours.reduce((n, b, i) => n + (b === ffmpeg[i] ? 0 : 1), 0);
      expect(differ, codec).toBe(0);
    }
  });
});
