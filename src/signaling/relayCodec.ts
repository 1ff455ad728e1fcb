// The roomgate protocol's data channel for the rooms: the sfu relays bytes, topic and destinations;
// this is where they are framed in the protocol's envelope (dataEnvelope.ts, which the client shares).
import type { RelayCodec } from '../sfu/RoomTypes.ts';
import { decodeData, encodeData } from './dataEnvelope.ts';

export const roomgateRelayCodec: RelayCodec = {
  label: 'roomgate',
  protocol: 'roomgate-data-v1',
  decode(message) {
    const decoded = decodeData(message);
    if (!decoded) return undefined;
    return { payload: decoded.payload, topic: decoded.header.topic, destinations: decoded.header.destinationIdentities ?? [] };
  },
  encode({ payload, topic, from }) {
    return encodeData({ ...(topic ? { topic } : {}), ...(from ? { from } : {}) }, payload);
  },
};
