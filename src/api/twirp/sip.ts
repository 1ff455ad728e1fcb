// livekit.SIP as livekit-server-sdk's SipClient sends it: inbound and outbound trunks and dispatch
// rules, stored in Redis (SipStore); the SIP listener (src/sip/SipServer.ts) reads them on each
// INVITE. sip.admin for trunks and rules, sip.call for placing calls, as LiveKit checks them.
// Dialling out (CreateSIPParticipant), transfers and the Update* calls are not there yet: they
// answer `unimplemented` with what to do instead.
import {
  CreateSIPDispatchRuleRequest,
  CreateSIPInboundTrunkRequest,
  CreateSIPOutboundTrunkRequest,
  CreateSIPParticipantRequest,
  DeleteSIPDispatchRuleRequest,
  DeleteSIPTrunkRequest,
  GetSIPInboundTrunkRequest,
  GetSIPInboundTrunkResponse,
  GetSIPOutboundTrunkRequest,
  GetSIPOutboundTrunkResponse,
  ListSIPDispatchRuleRequest,
  ListSIPDispatchRuleResponse,
  ListSIPInboundTrunkRequest,
  ListSIPInboundTrunkResponse,
  ListSIPOutboundTrunkRequest,
  ListSIPOutboundTrunkResponse,
  SIPDispatchRuleInfo,
  SIPInboundTrunkInfo,
  SIPOutboundTrunkInfo,
  SIPParticipantInfo,
  SIPTrunkInfo,
  SIPTrunkInfo_TrunkKind,
  TransferSIPParticipantRequest,
  UpdateSIPDispatchRuleRequest,
  UpdateSIPInboundTrunkRequest,
  UpdateSIPOutboundTrunkRequest,
} from '@livekit/protocol';
import { Empty, Timestamp } from '@bufbuild/protobuf';
import { ensureSipAdminPermission, ensureSipCallPermission } from '../../auth/permissions.ts';
import { ApiError, invalidArgument, notFound } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { conflicts, destination, validAddress } from '../../sip/dispatch.ts';
import type { SipStore } from '../../store/SipStore.ts';
import { checkMetadata } from './room.ts';
import { method, type TwirpService } from './router.ts';

const unimplemented = (what: string) => new ApiError('unimplemented', what);

function checkNumbers(numbers: string[], field: string): string[] {
  for (const n of numbers) {
    if (!/^[+\w*#.\-() ]{1,64}$/.test(n)) throw invalidArgument(`${field}: '${n.slice(0, 80)}' is not a phone number or SIP user`, field);
  }
  return numbers;
}

function checkInbound(t: SIPInboundTrunkInfo): void {
  checkMetadata(t.metadata);
  checkNumbers(t.numbers, 'numbers');
  checkNumbers(t.allowedNumbers, 'allowed_numbers');
  for (const a of t.allowedAddresses) {
    if (!validAddress(a)) throw invalidArgument(`allowed_addresses: '${a.slice(0, 80)}' is not an IP address or CIDR range`, 'allowed_addresses');
  }
  if ((t.authUsername === '') !== (t.authPassword === '')) {
    throw invalidArgument('auth_username and auth_password go together: set both or neither', 'auth_password');
  }
}

/** LiveKit's view of a trunk in the deprecated ListSIPTrunk / DeleteSIPTrunk answers. */
function legacyInbound(t: SIPInboundTrunkInfo): SIPTrunkInfo {
  return new SIPTrunkInfo({
    sipTrunkId: t.sipTrunkId,
    kind: SIPTrunkInfo_TrunkKind.TRUNK_INBOUND,
    inboundAddresses: t.allowedAddresses,
    inboundNumbers: t.allowedNumbers,
    inboundUsername: t.authUsername,
    inboundPassword: t.authPassword,
    outboundNumber: t.numbers[0] ?? '',
    name: t.name,
    metadata: t.metadata,
  });
}

function legacyOutbound(t: SIPOutboundTrunkInfo): SIPTrunkInfo {
  return new SIPTrunkInfo({
    sipTrunkId: t.sipTrunkId,
    kind: SIPTrunkInfo_TrunkKind.TRUNK_OUTBOUND,
    outboundAddress: t.address,
    outboundNumber: t.numbers[0] ?? '',
    outboundUsername: t.authUsername,
    outboundPassword: t.authPassword,
    transport: t.transport,
    name: t.name,
    metadata: t.metadata,
  });
}

const pick = <T>(items: T[], ids: string[], id: (x: T) => string) => (ids.length === 0 ? items : items.filter((x) => ids.includes(id(x))));

export function sipService(store: SipStore): TwirpService {
  return {
    name: 'livekit.SIP',
    methods: {
      CreateSIPInboundTrunk: method(CreateSIPInboundTrunkRequest, async (req, { claims, log }) => {
        ensureSipAdminPermission(claims);
        if (!req.trunk) throw invalidArgument('trunk is required', 'trunk');
        const trunk = req.trunk.clone();
        checkInbound(trunk);
        trunk.sipTrunkId = newId('ST_');
        trunk.createdAt = Timestamp.now();
        await store.inbound.put(trunk);
        log.info({ trunk: trunk.sipTrunkId, numbers: trunk.numbers.length }, 'SIP inbound trunk created');
        return trunk;
      }),
      CreateSIPOutboundTrunk: method(CreateSIPOutboundTrunkRequest, async (req, { claims, log }) => {
        ensureSipAdminPermission(claims);
        if (!req.trunk) throw invalidArgument('trunk is required', 'trunk');
        const trunk = req.trunk.clone();
        checkMetadata(trunk.metadata);
        checkNumbers(trunk.numbers, 'numbers');
        if (!/^[\w.\-[\]:]+$/.test(trunk.address)) throw invalidArgument('address must be host or host:port of the SIP server to dial', 'address');
        trunk.sipTrunkId = newId('ST_');
        trunk.createdAt = Timestamp.now();
        await store.outbound.put(trunk);
        log.info({ trunk: trunk.sipTrunkId }, 'SIP outbound trunk created');
        return trunk;
      }),
      GetSIPInboundTrunk: method(GetSIPInboundTrunkRequest, async (req, { claims }) => {
        ensureSipAdminPermission(claims);
        const trunk = store.inbound.get(req.sipTrunkId);
        if (!trunk) throw notFound(`SIP inbound trunk '${req.sipTrunkId}' does not exist`);
        return new GetSIPInboundTrunkResponse({ trunk });
      }),
      GetSIPOutboundTrunk: method(GetSIPOutboundTrunkRequest, async (req, { claims }) => {
        ensureSipAdminPermission(claims);
        const trunk = store.outbound.get(req.sipTrunkId);
        if (!trunk) throw notFound(`SIP outbound trunk '${req.sipTrunkId}' does not exist`);
        return new GetSIPOutboundTrunkResponse({ trunk });
      }),
      ListSIPInboundTrunk: method(ListSIPInboundTrunkRequest, async (req, { claims }) => {
        ensureSipAdminPermission(claims);
        let items = pick(store.inbound.list(), req.trunkIds, (t) => t.sipTrunkId);
        if (req.numbers.length > 0) items = items.filter((t) => t.numbers.some((n) => req.numbers.includes(n)));
        return new ListSIPInboundTrunkResponse({ items });
      }),
      ListSIPOutboundTrunk: method(ListSIPOutboundTrunkRequest, async (req, { claims }) => {
        ensureSipAdminPermission(claims);
        let items = pick(store.outbound.list(), req.trunkIds, (t) => t.sipTrunkId);
        if (req.numbers.length > 0) items = items.filter((t) => t.numbers.some((n) => req.numbers.includes(n)));
        return new ListSIPOutboundTrunkResponse({ items });
      }),
      DeleteSIPTrunk: method(DeleteSIPTrunkRequest, async (req, { claims, log }) => {
        ensureSipAdminPermission(claims);
        const inbound = store.inbound.get(req.sipTrunkId);
        const outbound = inbound ? undefined : store.outbound.get(req.sipTrunkId);
        if (!inbound && !outbound) throw notFound(`SIP trunk '${req.sipTrunkId}' does not exist`);
        if (inbound) await store.inbound.delete(req.sipTrunkId);
        else await store.outbound.delete(req.sipTrunkId);
        log.info({ trunk: req.sipTrunkId }, 'SIP trunk deleted');
        return inbound ? legacyInbound(inbound) : legacyOutbound(outbound!);
      }),
      CreateSIPDispatchRule: method(CreateSIPDispatchRuleRequest, async (req, { claims, log }) => {
        ensureSipAdminPermission(claims);
        // Newer SDKs send the whole rule in dispatch_rule; older ones its fields one by one.
        const rule =
          req.dispatchRule?.clone() ??
          new SIPDispatchRuleInfo({
            ...(req.rule ? { rule: req.rule } : {}),
            trunkIds: req.trunkIds,
            hidePhoneNumber: req.hidePhoneNumber,
            inboundNumbers: req.inboundNumbers,
            name: req.name,
            metadata: req.metadata,
            attributes: req.attributes,
            roomPreset: req.roomPreset,
            ...(req.roomConfig ? { roomConfig: req.roomConfig } : {}),
          });
        checkMetadata(rule.metadata);
        checkNumbers(rule.inboundNumbers, 'inbound_numbers');
        if (!destination(rule, { called: '0', caller: '0', source: '127.0.0.1' })) {
          throw invalidArgument('rule must be a direct rule with a room_name, an individual rule or a callee rule', 'rule');
        }
        for (const id of rule.trunkIds) if (!store.inbound.get(id)) throw invalidArgument(`trunk_ids: no inbound trunk '${id}'`, 'trunk_ids');
        const clash = store.rules.list().find((r) => conflicts(r, rule));
        if (clash) throw new ApiError('already_exists', `dispatch rule ${clash.sipDispatchRuleId} already covers these trunks and callers`);
        rule.sipDispatchRuleId = newId('SDR_');
        rule.createdAt = Timestamp.now();
        await store.rules.put(rule);
        log.info({ rule: rule.sipDispatchRuleId, kind: rule.rule?.rule.case }, 'SIP dispatch rule created');
        return rule;
      }),
      ListSIPDispatchRule: method(ListSIPDispatchRuleRequest, async (req, { claims }) => {
        ensureSipAdminPermission(claims);
        let items = pick(store.rules.list(), req.dispatchRuleIds, (r) => r.sipDispatchRuleId);
        if (req.trunkIds.length > 0) items = items.filter((r) => r.trunkIds.length === 0 || r.trunkIds.some((t) => req.trunkIds.includes(t)));
        return new ListSIPDispatchRuleResponse({ items });
      }),
      DeleteSIPDispatchRule: method(DeleteSIPDispatchRuleRequest, async (req, { claims, log }) => {
        ensureSipAdminPermission(claims);
        const rule = store.rules.get(req.sipDispatchRuleId);
        if (!rule) throw notFound(`SIP dispatch rule '${req.sipDispatchRuleId}' does not exist`);
        await store.rules.delete(rule.sipDispatchRuleId);
        log.info({ rule: rule.sipDispatchRuleId }, 'SIP dispatch rule deleted');
        return rule;
      }),
      UpdateSIPInboundTrunk: method(UpdateSIPInboundTrunkRequest, async (_req, { claims }): Promise<SIPInboundTrunkInfo> => {
        ensureSipAdminPermission(claims);
        throw unimplemented('updating a SIP trunk is not supported yet: delete it and create it again');
      }),
      UpdateSIPOutboundTrunk: method(UpdateSIPOutboundTrunkRequest, async (_req, { claims }): Promise<SIPOutboundTrunkInfo> => {
        ensureSipAdminPermission(claims);
        throw unimplemented('updating a SIP trunk is not supported yet: delete it and create it again');
      }),
      UpdateSIPDispatchRule: method(UpdateSIPDispatchRuleRequest, async (_req, { claims }): Promise<SIPDispatchRuleInfo> => {
        ensureSipAdminPermission(claims);
        throw unimplemented('updating a SIP dispatch rule is not supported yet: delete it and create it again');
      }),
      CreateSIPParticipant: method(CreateSIPParticipantRequest, async (_req, { claims }): Promise<SIPParticipantInfo> => {
        ensureSipCallPermission(claims);
        throw unimplemented('dialling out (CreateSIPParticipant) is not supported yet: roomgate answers inbound calls only');
      }),
      TransferSIPParticipant: method(TransferSIPParticipantRequest, async (_req, { claims }): Promise<Empty> => {
        ensureSipCallPermission(claims);
        throw unimplemented('call transfer (REFER) is not supported yet');
      }),
    },
  };
}
