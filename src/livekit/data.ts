// LiveKit data messages (DataPacket) on mediasoup 3.8.4's data channels. Pure.
//
// mediasoup 3.8.4 neither answers nor forwards DCEP (RFC 8832), so:
// - upstream, the server holds DataProducers on the stream ids the client's `_lossy`/`_reliable`
//   channels will use and tells the two apart by the packet's own `kind`;
// - downstream, the server opens `_reliable` and `_lossy` on the subscriber PeerConnection itself by
//   sending a DATA_CHANNEL_OPEN it builds here, which the browser accepts like any peer's.
import { DataPacket, DataPacket_Kind, UserPacket } from '@livekit/protocol';
import type { InboundData, RoomData } from '../sfu/ParticipantTypes.ts';

/** Largest DataPacket relayed (LiveKit's reliable limit is 15 KiB per message; streams chunk below it). */
export const MAX_PACKET_BYTES = 64 * 1024;

/**
 * SDKs built on LiveKit's Rust SDK (rtc-node, Python rtc, Rust; Unity and C++ through its FFI) write their own DataPacketKind enum
 * (Lossy 0, Reliable 1) into the protobuf's `kind` (RELIABLE 0, LOSSY 1), so the field says the
 * opposite of the channel used. LiveKit's server goes by the channel, which mediasoup 3.8.4 cannot
 * name (no DCEP); these SDKs number every reliable packet (`sequence` ≥ 1) and no lossy one.
 */
const KIND_FROM_SEQUENCE_SDKS: ReadonlySet<string> = new Set(['rust', 'node', 'python', 'unity', 'cpp']);

export function kindFromSequence(sdk: string | null | undefined): boolean {
  return KIND_FROM_SEQUENCE_SDKS.has(sdk ?? '');
}

/**
 * A client's DataPacket as what the room delivers; undefined for what is not one or not ours to
 * relay. `bySequence`: reliability from `sequence`, not `kind` (see kindFromSequence).
 */
export function readDataPacket(message: Uint8Array, bySequence = false): InboundData | undefined {
  if (message.length === 0 || message.length > MAX_PACKET_BYTES) return undefined;
  let packet: DataPacket;
  try {
    packet = DataPacket.fromBinary(message);
  } catch {
    return undefined;
  }
  const value = packet.value;
  // Speaker updates are the server's to send; an empty packet carries nothing.
  if (value.case === undefined || value.case === 'speaker') return undefined;
  const reliable = bySequence ? packet.sequence > 0 : packet.kind !== DataPacket_Kind.LOSSY;
  if (value.case === 'user') {
    const destinations = [...new Set([...packet.destinationIdentities, ...value.value.destinationIdentities])];
    return {
      payload: value.value.payload,
      ...(value.value.topic ? { topic: value.value.topic } : {}),
      destinations,
      reliable,
      packet: message,
    };
  }
  // Chat, text/byte streams, RPC and the rest: only LiveKit clients read them, as sent.
  return { destinations: [...packet.destinationIdentities], reliable, packet: message };
}

/**
 * The DataPacket a LiveKit client receives: the sender's own packet re-stamped with who sent it
 * (clients trust the server's identity, not the sender's claim), or a user packet built from a
 * roomgate-SDK message or RoomService SendData.
 */
export function writeDataPacket(msg: RoomData): Uint8Array {
  const identity = msg.from ?? '';
  const sid = msg.fromSid ?? '';
  let packet: DataPacket | undefined;
  if (msg.packet) {
    try {
      packet = DataPacket.fromBinary(msg.packet);
    } catch {
      packet = undefined;
    }
  }
  if (!packet) {
    packet = new DataPacket({
      kind: msg.reliable ? DataPacket_Kind.RELIABLE : DataPacket_Kind.LOSSY,
      value: { case: 'user', value: new UserPacket({ payload: msg.payload ?? new Uint8Array(), ...(msg.topic ? { topic: msg.topic } : {}) }) },
    });
  }
  packet.participantIdentity = identity;
  packet.participantSid = sid;
  // What the relay decided (from the channel or the sequence), for receivers that read the field.
  packet.kind = msg.reliable ? DataPacket_Kind.RELIABLE : DataPacket_Kind.LOSSY;
  packet.destinationIdentities = [];
  if (packet.value.case === 'user') {
    packet.value.value.participantIdentity = identity;
    packet.value.value.participantSid = sid;
    packet.value.value.destinationIdentities = [];
    packet.value.value.destinationSids = [];
  }
  return packet.toBinary();
}

/** PPID of a DCEP message (RFC 8832 §8.1). */
export const PPID_DCEP = 50;
/** PPID of a binary WebRTC data channel message. */
export const PPID_BINARY = 53;

/**
 * A DATA_CHANNEL_OPEN (RFC 8832 §5.1): ordered reliable, or unordered with `maxRetransmits`
 * retransmissions (partial reliability by count).
 */
export function dcepOpen(label: string, opts: { ordered: boolean; maxRetransmits?: number }): Buffer {
  const labelBytes = Buffer.from(label, 'utf8');
  const out = Buffer.alloc(12 + labelBytes.length);
  const partial = opts.maxRetransmits !== undefined;
  out.writeUInt8(0x03, 0); // DATA_CHANNEL_OPEN
  out.writeUInt8((opts.ordered ? 0x00 : 0x80) | (partial ? 0x01 : 0x00), 1);
  out.writeUInt16BE(256, 2); // priority: normal
  out.writeUInt32BE(partial ? opts.maxRetransmits! : 0, 4);
  out.writeUInt16BE(labelBytes.length, 8);
  out.writeUInt16BE(0, 10); // no protocol
  labelBytes.copy(out, 12);
  return out;
}
