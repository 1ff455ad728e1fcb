// Which trunk and dispatch rule a call falls under and the room it goes to (src/sip/dispatch.ts),
// as LiveKit's SIP service decides: specific trunks and rules win over catch-all ones.
import { SIPDispatchRule, SIPDispatchRuleInfo, SIPInboundTrunkInfo } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { conflicts, destination, matchRule, matchTrunk, validAddress } from '../../src/sip/dispatch.ts';

const trunk = (id: string, init: Partial<SIPInboundTrunkInfo> = {}) => new SIPInboundTrunkInfo({ sipTrunkId: id, ...init });
const direct = (id: string, room: string, init: Partial<SIPDispatchRuleInfo> = {}) =>
  new SIPDispatchRuleInfo({ sipDispatchRuleId: id, rule: new SIPDispatchRule({ rule: { case: 'dispatchRuleDirect', value: { roomName: room, pin: '' } } }), ...init });
const call = { called: '+1 555-0100', caller: '+15550111', source: '10.1.2.3' };

describe('SIP dispatch', () => {
  it('matches the trunk by called number, source address and caller, preferring one that names the number', () => {
    const any = trunk('ST_any');
    const office = trunk('ST_office', { numbers: ['+15550100'] });
    const other = trunk('ST_other', { numbers: ['+15550200'] });
    expect(matchTrunk([any, office, other], call)?.sipTrunkId).toBe('ST_office');
    expect(matchTrunk([other], call)).toBeUndefined();
    expect(matchTrunk([trunk('ST_net', { allowedAddresses: ['10.0.0.0/8'] })], call)?.sipTrunkId).toBe('ST_net');
    expect(matchTrunk([trunk('ST_net', { allowedAddresses: ['192.168.0.0/16', '10.1.2.4'] })], call)).toBeUndefined();
    expect(matchTrunk([trunk('ST_vip', { allowedNumbers: ['+15550999'] })], call)).toBeUndefined();
  });

  it('matches the rule for the trunk before a rule for every trunk', () => {
    const all = direct('SDR_all', 'lobby');
    const mine = direct('SDR_mine', 'office', { trunkIds: ['ST_office'] });
    expect(matchRule([all, mine], 'ST_office', call)?.sipDispatchRuleId).toBe('SDR_mine');
    expect(matchRule([all, mine], 'ST_other', call)?.sipDispatchRuleId).toBe('SDR_all');
    expect(matchRule([mine], 'ST_other', call)).toBeUndefined();
    expect(conflicts(all, direct('SDR_2', 'x'))).toBe(true);
    expect(conflicts(all, mine)).toBe(false);
  });

  it('names the room: direct, individual per caller (random suffix unless asked), callee', () => {
    expect(destination(direct('r', 'lobby'), call)).toEqual({ room: 'lobby', pin: '' });
    const individual = new SIPDispatchRuleInfo({ rule: new SIPDispatchRule({ rule: { case: 'dispatchRuleIndividual', value: { roomPrefix: 'call', pin: '12' } } }) });
    const a = destination(individual, call)!;
    expect(a.room).toMatch(/^call_\+15550111_[A-Za-z0-9]{8}$/);
    expect(a.pin).toBe('12');
    expect(destination(individual, call)!.room).not.toBe(a.room);
    const fixed = new SIPDispatchRuleInfo({ rule: new SIPDispatchRule({ rule: { case: 'dispatchRuleIndividual', value: { roomPrefix: 'call', noRandomness: true } } }) });
    expect(destination(fixed, call)?.room).toBe('call_+15550111');
    expect(destination(new SIPDispatchRuleInfo({}), call)).toBeUndefined();
  });

  it('accepts IP addresses and CIDR ranges only', () => {
    expect(['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8'].every(validAddress)).toBe(true);
    expect(['10.0.0.0/33', 'example.com', '1.2.3.4/8/8', '', '::/129'].some(validAddress)).toBe(false);
  });
});
