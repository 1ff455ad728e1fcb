// What the room hands a SIP participant becomes keys on its phone: a stock LiveKit client's
// SipDTMF packet (livekit-client publishDtmf, as LiveKitSignaling reads it off the data channel)
// or roomgate's `sip.dtmf` message; anything else is not DTMF.
import { DataPacket, DataPacket_Kind, SipDTMF, UserPacket } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { readDataPacket } from '../../src/livekit/data.ts';
import { dtmfOf } from '../../src/sip/SipServer.ts';

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe('DTMF for the phone', () => {
  it('reads a LiveKit SipDTMF packet as the room delivers it', () => {
    const wire = new DataPacket({ kind: DataPacket_Kind.RELIABLE, value: { case: 'sipDtmf', value: new SipDTMF({ code: 11, digit: '#' }) } }).toBinary();
    const inbound = readDataPacket(wire)!;
    expect(dtmfOf({ ...inbound, reliable: true })).toBe('#');
    // Only the code set (digit empty): the key comes from the code.
    const byCode = new DataPacket({ value: { case: 'sipDtmf', value: new SipDTMF({ code: 7 }) } }).toBinary();
    expect(dtmfOf({ packet: byCode, reliable: true })).toBe('7');
  });

  it('reads roomgate\'s sip.dtmf message (digit or digits) and nothing else', () => {
    expect(dtmfOf({ topic: 'sip.dtmf', payload: enc({ digit: '5' }), reliable: true })).toBe('5');
    expect(dtmfOf({ topic: 'sip.dtmf', payload: enc({ digits: '12w#' }), reliable: true })).toBe('12w#');
    expect(dtmfOf({ topic: 'sip.dtmf', payload: enc({ digits: '1; rm -rf' }), reliable: true })).toBeUndefined();
    expect(dtmfOf({ topic: 'sip.dtmf', payload: new TextEncoder().encode('not json'), reliable: true })).toBeUndefined();
    expect(dtmfOf({ topic: 'chat', payload: enc({ digit: '5' }), reliable: true })).toBeUndefined();
    const user = new DataPacket({ value: { case: 'user', value: new UserPacket({ payload: enc({ digit: '5' }), topic: 'chat' }) } }).toBinary();
    expect(dtmfOf({ ...readDataPacket(user)!, reliable: true })).toBeUndefined();
  });
});
