// Which inbound trunk and dispatch rule an incoming call falls under, and the room it goes to, as
// LiveKit's SIP service decides it (livekit/sip pkg/sip + protocol/sip): pure, no I/O.
//
//   trunk: its numbers hold the called number (no numbers: any), its allowed addresses hold the
//          source address (none: any), its allowed numbers hold the caller (none: any); a trunk
//          that names the number wins over a catch-all one
//   rule:  the rules that name the trunk win over rules for every trunk; a rule's inbound numbers,
//          when set, must hold the caller
import { BlockList, isIP } from 'node:net';
import type { SIPDispatchRuleInfo, SIPInboundTrunkInfo } from '@livekit/protocol';
import { randomBytes } from 'node:crypto';

export interface CallIdentity {
  /** The number called (user part of To / Request-URI). */
  called: string;
  /** The caller (user part of From). */
  caller: string;
  /** The caller's IP address. */
  source: string;
}

/** Numbers compare without the formatting people write them with (+1 555-0100 = +15550100). */
export function normalizeNumber(n: string): string {
  return n.replace(/[\s\-().]/g, '');
}

/** An address or CIDR a trunk allows; false for anything else (the API refuses it). */
export function validAddress(spec: string): boolean {
  const [ip, bits, extra] = spec.split('/');
  if (extra !== undefined || !ip) return false;
  const family = isIP(ip);
  if (!family) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

function addressAllowed(allowed: string[], source: string): boolean {
  if (allowed.length === 0) return true;
  const family = isIP(source);
  if (!family) return false;
  const list = new BlockList();
  for (const spec of allowed) {
    if (!validAddress(spec)) continue;
    const [ip, bits] = spec.split('/') as [string, string | undefined];
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(ip, type);
    else list.addSubnet(ip, Number(bits), type);
  }
  return list.check(source, family === 6 ? 'ipv6' : 'ipv4');
}

const inList = (list: string[], n: string) => list.some((x) => normalizeNumber(x) === normalizeNumber(n));

/** The trunk the call arrives on; undefined when none accepts it. */
export function matchTrunk(trunks: SIPInboundTrunkInfo[], call: CallIdentity): SIPInboundTrunkInfo | undefined {
  const fits = trunks.filter(
    (t) =>
      (t.numbers.length === 0 || inList(t.numbers, call.called)) &&
      addressAllowed(t.allowedAddresses, call.source) &&
      (t.allowedNumbers.length === 0 || inList(t.allowedNumbers, call.caller)),
  );
  return fits.find((t) => t.numbers.length > 0) ?? fits[0];
}

/** The rule for a call on `trunkId`; undefined when no rule applies. */
export function matchRule(rules: SIPDispatchRuleInfo[], trunkId: string, call: CallIdentity): SIPDispatchRuleInfo | undefined {
  const fits = rules.filter(
    (r) => (r.trunkIds.length === 0 || r.trunkIds.includes(trunkId)) && (r.inboundNumbers.length === 0 || inList(r.inboundNumbers, call.caller)),
  );
  return fits.find((r) => r.trunkIds.length > 0) ?? fits[0];
}

/** Two rules a call could fall under alike: the same trunks (or both for every trunk) and callers. */
export function conflicts(a: SIPDispatchRuleInfo, b: SIPDispatchRuleInfo): boolean {
  const sameSet = (x: string[], y: string[]) => x.length === y.length && x.every((v) => y.includes(v));
  const trunksOverlap = (a.trunkIds.length === 0 && b.trunkIds.length === 0) || a.trunkIds.some((t) => b.trunkIds.includes(t));
  return trunksOverlap && sameSet(a.inboundNumbers.map(normalizeNumber), b.inboundNumbers.map(normalizeNumber));
}

export interface Destination {
  room: string;
  /** The PIN the caller must enter first ('' for none). */
  pin: string;
}

/** The room a rule sends the call to: LiveKit's `<prefix>_<caller>_<random>` for individual rooms. */
export function destination(rule: SIPDispatchRuleInfo, call: CallIdentity): Destination | undefined {
  const r = rule.rule?.rule;
  const suffix = () => randomBytes(6).toString('base64url').replace(/[-_]/g, 'x').slice(0, 8);
  switch (r?.case) {
    case 'dispatchRuleDirect':
      return r.value.roomName ? { room: r.value.roomName, pin: r.value.pin } : undefined;
    case 'dispatchRuleIndividual': {
      const base = `${r.value.roomPrefix}_${rule.hidePhoneNumber ? 'caller' : call.caller}`;
      return { room: r.value.noRandomness ? base : `${base}_${suffix()}`, pin: r.value.pin };
    }
    case 'dispatchRuleCallee': {
      const base = `${r.value.roomPrefix}${call.called}`;
      return { room: r.value.randomize ? `${base}_${suffix()}` : base, pin: r.value.pin };
    }
    default:
      return undefined;
  }
}
