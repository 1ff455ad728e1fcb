// livekit.SIP as livekit-server-sdk's SipClient sends it: inbound and outbound trunks and dispatch
// rules, stored in Redis (SipStore); the SIP listener (src/sip/SipServer.ts) reads them on each
// INVITE. sip.admin for trunks and rules, sip.call for placing calls, as LiveKit checks them.
// CreateSIPParticipant dials out through an outbound trunk (the SIP listener places the call),
// TransferSIPParticipant sends the phone a REFER; the Update* calls are not there yet: they answer `unimplemented` with what to do instead.
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
  SIPTransport,
  TransferSIPParticipantRequest,
  UpdateSIPDispatchRuleRequest,
  UpdateSIPInboundTrunkRequest,
  UpdateSIPOutboundTrunkRequest,
} from '@livekit/protocol';
import { Empty, Timestamp } from '@bufbuild/protobuf';
import { ensureAdminPermission, ensureSipAdminPermission, ensureSipCallPermission } from '../../auth/permissions.ts';
import { ApiError, invalidArgument, notFound } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { conflicts, destination, validAddress } from '../../sip/dispatch.ts';
import type { SipServer } from '../../sip/SipServer.ts';
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

/** LiveKit's ringing timeout when the request names none (livekit/sip). */
const DEFAULT_RINGING_TIMEOUT_S = 30;
/** Longest ringing timeout we accept (LiveKit caps it likewise); 0 or none means the default. */
const MAX_RINGING_TIMEOUT_S = 80;
const CALLED_NUMBER = /^[\w+*#.\-]{1,64}$/;

/** `dialer`: the SIP listener, undefined when SIP is off (CreateSIPParticipant then says so). */
export function sipService(store: SipStore, dialer?: Pick<SipServer, 'dial' | 'transfer'>): TwirpService {
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
      CreateSIPParticipant: method(CreateSIPParticipantRequest, async (req, { claims, log }): Promise<SIPParticipantInfo> => {
        ensureSipCallPermission(claims);
        if (!dialer) throw new ApiError('failed_precondition', 'SIP is off on this gateway: set sip.enabled (ROOMGATE_SIP_ENABLED=true) to place calls');
        // A stored outbound trunk, or one given inline (SIPOutboundConfig), as the SDK sends either.
        let trunk: { id: string; address: string; transport: SIPTransport; numbers: string[]; username: string; password: string };
        if (req.sipTrunkId) {
          const t = store.outbound.get(req.sipTrunkId);
          if (!t) throw notFound(`SIP outbound trunk '${req.sipTrunkId}' does not exist`);
          trunk = { id: t.sipTrunkId, address: t.address, transport: t.transport, numbers: t.numbers, username: t.authUsername, password: t.authPassword };
        } else if (req.trunk?.hostname) {
          const t = req.trunk;
          if (!/^[\w.\-[\]:]+$/.test(t.hostname)) throw invalidArgument('trunk.hostname must be host or host:port of the SIP server to dial', 'trunk.hostname');
          trunk = { id: '', address: t.hostname, transport: t.transport, numbers: [], username: t.authUsername, password: t.authPassword };
        } else {
          throw invalidArgument('sip_trunk_id (or trunk) is required', 'sip_trunk_id');
        }
        if (trunk.transport === SIPTransport.SIP_TRANSPORT_TCP || trunk.transport === SIPTransport.SIP_TRANSPORT_TLS) {
          throw unimplemented('only UDP trunks can be dialled: set the trunk\'s transport to UDP or AUTO');
        }
        if (!CALLED_NUMBER.test(req.sipCallTo)) throw invalidArgument('sip_call_to must be a phone number or SIP user (letters, digits, + * # . -)', 'sip_call_to');
        if (!req.roomName) throw invalidArgument('room_name is required', 'room_name');
        const from = req.sipNumber || trunk.numbers[0] || 'roomgate';
        if (!CALLED_NUMBER.test(from)) throw invalidArgument('sip_number must be a phone number or SIP user', 'sip_number');
        checkMetadata(req.participantMetadata);
        const ringing = Number(req.ringingTimeout?.seconds ?? 0n);
        if (ringing > MAX_RINGING_TIMEOUT_S) throw invalidArgument(`ringing_timeout is at most ${MAX_RINGING_TIMEOUT_S} s`, 'ringing_timeout');
        if (req.dtmf && !/^[0-9*#A-Dw]{1,64}$/i.test(req.dtmf)) throw invalidArgument('dtmf may hold 0-9 * # A-D and w (a pause)', 'dtmf');
        const call = await dialer.dial({
          trunkId: trunk.id,
          address: trunk.address,
          auth: trunk.username ? { username: trunk.username, password: trunk.password } : undefined,
          to: req.sipCallTo,
          from,
          room: req.roomName,
          identity: req.participantIdentity || `sip_${req.sipCallTo}`,
          name: req.participantName,
          metadata: req.participantMetadata,
          attributes: req.participantAttributes,
          hidePhoneNumber: req.hidePhoneNumber,
          ringingTimeoutMs: (ringing > 0 ? ringing : DEFAULT_RINGING_TIMEOUT_S) * 1000,
          maxCallDurationMs: Number(req.maxCallDuration?.seconds ?? 0n) * 1000,
          dtmf: req.dtmf,
        });
        log.info({ call: call.sipCallId, room: call.roomName, trunk: trunk.id, wait: req.waitUntilAnswered }, 'SIP participant dialling');
        if (req.waitUntilAnswered) await call.answered;
        return new SIPParticipantInfo({ participantId: call.participantId, participantIdentity: call.participantIdentity, roomName: call.roomName, sipCallId: call.sipCallId });
      }),
      TransferSIPParticipant: method(TransferSIPParticipantRequest, async (req, { claims, log }): Promise<Empty> => {
        ensureSipCallPermission(claims);
        // LiveKit asks for roomAdmin on the room as well (the SDK's token carries both).
        ensureAdminPermission(claims, req.roomName);
        if (!dialer) throw new ApiError('failed_precondition', 'SIP is off on this gateway: there is no call to transfer');
        if (!req.participantIdentity) throw invalidArgument('participant_identity is required', 'participant_identity');
        // LiveKit takes `sip:…` and `tel:…` URIs; a bare number is taken as tel:.
        const to = /^(sips?|tel):/i.test(req.transferTo) ? req.transferTo : `tel:${req.transferTo}`;
        if (!/^(sips?|tel):[^\s<>"]{1,200}$/i.test(to)) throw invalidArgument('transfer_to must be a sip: or tel: URI', 'transfer_to');
        const ringing = Number(req.ringingTimeout?.seconds ?? 0n);
        if (ringing > MAX_RINGING_TIMEOUT_S) throw invalidArgument(`ringing_timeout is at most ${MAX_RINGING_TIMEOUT_S} s`, 'ringing_timeout');
        await dialer.transfer(req.roomName, req.participantIdentity, to, (ringing > 0 ? ringing : DEFAULT_RINGING_TIMEOUT_S) * 1000);
        log.info({ room: req.roomName, identity: req.participantIdentity }, 'SIP participant transferred');
        return new Empty();
      }),
    },
  };
}
