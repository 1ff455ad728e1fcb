// Just enough MPEG-TS reading to learn when a stream's media starts: the PTS of its first video
// (or audio) PES (ISO/IEC 13818-1: 188-byte packets, PES headers at payload starts).

const PACKET = 188;

/** The first video (or audio) PTS in `data` (seconds, 90 kHz clock), or undefined when none is there yet. */
export function firstPts(data: Buffer, kind: 'video' | 'audio'): number | undefined {
  const streamIds = kind === 'video' ? 0xe0 : 0xc0;
  // Read from the start of a muxer's output: packets back to back from byte 0.
  for (let p = 0; p + PACKET <= data.length; p += PACKET) {
    if (data[p] !== 0x47) return undefined; // not aligned: no guessing
    const payloadStart = (data[p + 1]! & 0x40) !== 0;
    const adaptation = (data[p + 3]! >> 4) & 0x3;
    if (!payloadStart || (adaptation & 0x1) === 0) continue;
    const o = p + 4 + (adaptation === 0x3 ? 1 + data[p + 4]! : 0);
    if (o + 14 > p + PACKET) continue;
    // PES start code 00 00 01, stream id 0xE0–0xEF (video) or 0xC0–0xDF (audio), PTS flag set.
    const id = data[o + 3]! & (kind === 'video' ? 0xf0 : 0xe0);
    if (data[o] !== 0 || data[o + 1] !== 0 || data[o + 2] !== 1 || id !== streamIds || (data[o + 7]! & 0x80) === 0) continue;
    const b = data.subarray(o + 9, o + 14);
    const pts = (b[0]! & 0x0e) * 2 ** 29 + b[1]! * 2 ** 22 + ((b[2]! & 0xfe) >> 1) * 2 ** 15 + b[3]! * 2 ** 7 + (b[4]! >> 1);
    return pts / 90_000;
  }
  return undefined;
}
