// MPEG-TS packet layout (ISO/IEC 13818-1: 188-byte packets, 0x47 sync byte, PES headers at
// payload starts), in one place for the few readers that need it: the sinks' keyframe gate
// (src/egress/worker/tsGate.ts) and the composite's start time (firstPts).

export const TS_PACKET = 188;
export const TS_SYNC = 0x47;

export function pidOf(data: Buffer, p = 0): number {
  return ((data[p + 1]! & 0x1f) << 8) | data[p + 2]!;
}

/** payload_unit_start_indicator: a PES or a table section starts in this packet. */
export function startsUnit(data: Buffer, p = 0): boolean {
  return (data[p + 1]! & 0x40) !== 0;
}

export function hasAdaptation(data: Buffer, p = 0): boolean {
  return (data[p + 3]! & 0x20) !== 0;
}

export function hasPayload(data: Buffer, p = 0): boolean {
  return (data[p + 3]! & 0x10) !== 0;
}

/** Offset (from the packet's start) of its payload, after the header and any adaptation field. */
export function payloadOffset(data: Buffer, p = 0): number {
  return hasAdaptation(data, p) ? 5 + data[p + 4]! : 4;
}

/** The first video (or audio) PTS in `data` (seconds, 90 kHz clock), or undefined when none is there yet. */
export function firstPts(data: Buffer, kind: 'video' | 'audio'): number | undefined {
  const streamIds = kind === 'video' ? 0xe0 : 0xc0;
  // Read from the start of a muxer's output: packets back to back from byte 0.
  for (let p = 0; p + TS_PACKET <= data.length; p += TS_PACKET) {
    if (data[p] !== TS_SYNC) return undefined; // not aligned: no guessing
    if (!startsUnit(data, p) || !hasPayload(data, p)) continue;
    const o = p + payloadOffset(data, p);
    if (o + 14 > p + TS_PACKET) continue;
    // PES start code 00 00 01, stream id 0xE0–0xEF (video) or 0xC0–0xDF (audio), PTS flag set.
    const id = data[o + 3]! & (kind === 'video' ? 0xf0 : 0xe0);
    if (data[o] !== 0 || data[o + 1] !== 0 || data[o + 2] !== 1 || id !== streamIds || (data[o + 7]! & 0x80) === 0) continue;
    const b = data.subarray(o + 9, o + 14);
    const pts = (b[0]! & 0x0e) * 2 ** 29 + b[1]! * 2 ** 22 + ((b[2]! & 0xfe) >> 1) * 2 ** 15 + b[3]! * 2 ** 7 + (b[4]! >> 1);
    return pts / 90_000;
  }
  return undefined;
}
