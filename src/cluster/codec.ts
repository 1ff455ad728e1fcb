// Values of a call forwarded between nodes, as JSON: the RoomService backend takes and returns
// @livekit/protocol messages (with bigint fields and bytes), which JSON.stringify cannot carry. Each
// message is tagged with its type name and written in its canonical protobuf JSON; the receiver
// rebuilds the same class, so the handler on the owning node gets what a local call would give it.
// Pure: no I/O, unit-tested in test/unit/cluster-codec.test.ts.
import { Message, type AnyMessage, type MessageType } from '@bufbuild/protobuf';
import {
  ParticipantInfo,
  ParticipantPermission,
  Room,
  RoomEgress,
  TrackInfo,
  UpdateParticipantRequest,
} from '@livekit/protocol';

/** The message types a forwarded RoomService call carries; another type is refused, not guessed. */
const TYPES: MessageType<AnyMessage>[] = [Room, ParticipantInfo, TrackInfo, RoomEgress, ParticipantPermission, UpdateParticipantRequest].map(
  (t) => t as unknown as MessageType<AnyMessage>,
);
const BY_NAME = new Map(TYPES.map((t) => [t.typeName, t]));

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function encodeValue(value: unknown): Json {
  if (value === null || value === undefined) return null;
  if (value instanceof Message) {
    const type = value.getType();
    if (!BY_NAME.has(type.typeName)) throw new TypeError(`cannot forward a ${type.typeName} between nodes`);
    return { $pb: type.typeName, v: value.toJson() as Json };
  }
  if (value instanceof Uint8Array) return { $b: Buffer.from(value).toString('base64') };
  if (typeof value === 'bigint') return { $n: value.toString() };
  if (Array.isArray(value)) return value.map(encodeValue);
  if (typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = encodeValue(v);
    // A user's key such as an attribute named `$pb` must not read as a tag on the other side.
    return Object.keys(out).some((k) => k.startsWith('$')) ? { $o: out } : out;
  }
  if (typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') return value;
  throw new TypeError(`cannot forward a ${typeof value} between nodes`);
}

export function decodeValue(json: unknown): unknown {
  if (json === null || typeof json !== 'object') return json;
  if (Array.isArray(json)) return json.map(decodeValue);
  const obj = json as Record<string, unknown>;
  if (typeof obj.$pb === 'string') {
    const type = BY_NAME.get(obj.$pb);
    if (!type) throw new TypeError(`unknown message type ${obj.$pb} from another node`);
    return type.fromJson(obj.v as never, { ignoreUnknownFields: true });
  }
  if (typeof obj.$b === 'string') return new Uint8Array(Buffer.from(obj.$b, 'base64'));
  if (typeof obj.$n === 'string') return BigInt(obj.$n);
  const fields = typeof obj.$o === 'object' && obj.$o !== null ? (obj.$o as Record<string, unknown>) : obj;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = decodeValue(v);
  return out;
}
