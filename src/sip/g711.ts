// G.711 μ-law and A-law (ITU-T G.711) for the room's mix towards the caller, 160 samples per 20 ms
// packet. Pure. The decoders are Sun's g711.c; the encoders are tables built as FFmpeg builds its
// pcm_mulaw/pcm_alaw encoders' (each 14-bit input goes to the nearest decoded level), so the caller
// gets exactly the bytes an FFmpeg-encoded stream would carry.

export function muLawToLinear(code: number): number {
  const u = ~code & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  return u & 0x80 ? 0x84 - t : t - 0x84;
}

export function aLawToLinear(code: number): number {
  const a = (code ^ 0x55) & 0xff;
  const q = a & 0x0f;
  const seg = (a & 0x70) >> 4;
  const t = seg ? (q + q + 1 + 32) << (seg + 2) : (q + q + 1) << 3;
  return a & 0x80 ? t : -t;
}

function buildTable(decode: (code: number) => number, mask: number): Uint8Array {
  const table = new Uint8Array(16384);
  let j = 1;
  table[8192] = mask;
  for (let i = 0; i < 127; i++) {
    const v = (decode(i ^ mask) + decode((i + 1) ^ mask) + 4) >> 3;
    for (; j < v; j++) {
      table[8192 - j] = i ^ (mask ^ 0x80);
      table[8192 + j] = i ^ mask;
    }
  }
  for (; j < 8192; j++) {
    table[8192 - j] = 127 ^ (mask ^ 0x80);
    table[8192 + j] = 127 ^ mask;
  }
  table[0] = table[1]!;
  return table;
}

const MULAW = buildTable(muLawToLinear, 0xff);
const ALAW = buildTable(aLawToLinear, 0xd5);
const index = (sample: number) => (Math.max(-32768, Math.min(32767, Math.round(sample))) + 32768) >> 2;

export const linearToMuLaw = (sample: number): number => MULAW[index(sample)]!;
export const linearToALaw = (sample: number): number => ALAW[index(sample)]!;

/** Encodes PCM samples in one law. */
export function encodeG711(samples: Int16Array, codec: 'PCMU' | 'PCMA'): Buffer {
  const out = Buffer.alloc(samples.length);
  const table = codec === 'PCMU' ? MULAW : ALAW;
  for (let i = 0; i < samples.length; i++) out[i] = table[(samples[i]! + 32768) >> 2]!;
  return out;
}
