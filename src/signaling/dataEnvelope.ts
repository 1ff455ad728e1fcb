// Data messages travel over SCTP with a small envelope so one channel carries every topic:
//   [u16 big-endian header length][header JSON][payload bytes]
// Clients send header {topic?, destinationIdentities?}; the server delivers {topic?, from?}
// (`from` is absent for RoomService SendData). Shared by server and clients, so no dependencies:
// the browser bundle must stay small.

export interface DataHeader {
  topic?: string;
  destinationIdentities?: string[];
  from?: string;
}

const MAX_NAME = 256;

export function encodeData(header: DataHeader, payload: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(JSON.stringify(header));
  if (head.length > 0xffff) throw new TypeError('data header too large');
  const out = new Uint8Array(2 + head.length + payload.length);
  out[0] = head.length >> 8;
  out[1] = head.length & 0xff;
  out.set(head, 2);
  out.set(payload, 2 + head.length);
  return out;
}

const isName = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_NAME;

function parseHeader(value: unknown): DataHeader | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { topic, destinationIdentities, from, ...rest } = value as Record<string, unknown>;
  if (Object.keys(rest).length > 0) return undefined;
  if (topic !== undefined && !isName(topic)) return undefined;
  if (from !== undefined && !isName(from)) return undefined;
  if (destinationIdentities !== undefined) {
    if (!Array.isArray(destinationIdentities) || destinationIdentities.length > 1000 || !destinationIdentities.every(isName)) {
      return undefined;
    }
  }
  return {
    ...(topic !== undefined ? { topic } : {}),
    ...(destinationIdentities !== undefined ? { destinationIdentities: destinationIdentities as string[] } : {}),
    ...(from !== undefined ? { from } : {}),
  };
}

/** Parses an envelope; undefined when it is not one (the message is then dropped). */
export function decodeData(buf: Uint8Array): { header: DataHeader; payload: Uint8Array } | undefined {
  if (buf.length < 2) return undefined;
  const len = (buf[0]! << 8) | buf[1]!;
  if (2 + len > buf.length) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(buf.subarray(2, 2 + len)));
  } catch {
    return undefined;
  }
  const header = parseHeader(json);
  return header ? { header, payload: buf.subarray(2 + len) } : undefined;
}
