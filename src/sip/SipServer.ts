// The SIP user agent of the gateway (UDP): it answers INVITEs for the inbound trunks and dispatch
// rules of the livekit.SIP API and puts each call into its room as a participant of kind SIP.
//
//   INVITE → 100 → trunk (none: 404) → digest auth if the trunk has a password (401, wrong: 403)
//          → rule (none: 404) → 180 → join the room, publish the audio → 200 + SDP answer ⇄ ACK
//   BYE from the caller, or the participant removed / the room deleted (we send BYE): the call ends
//
// Transactions are kept to what UDP needs: provisional and final responses are re-sent when the
// INVITE is retransmitted, the 200 is re-sent until the ACK comes (RFC 3261 §13.3.1.4), our BYE
// until its 200. Everything a datagram carries is checked; a malformed one is dropped.
import dgram from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
import { DataPacket, DataPacket_Kind, ParticipantInfo_Kind, ParticipantPermission, SipDTMF, type SIPDispatchRuleInfo, type SIPInboundTrunkInfo } from '@livekit/protocol';
import { ApiError } from '../errors.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { Participant } from '../sfu/Participant.ts';
import type { RoomImpl } from '../sfu/Room.ts';
import type { JoinRequest } from '../sfu/RoomTypes.ts';
import { CallMedia } from './CallMedia.ts';
import { CallMix, type MixRoom } from './CallMix.ts';
import { DigestAuth } from './digest.ts';
import { destination, matchRule, matchTrunk, type CallIdentity } from './dispatch.ts';
import {
  header,
  parseCSeq,
  parseMessage,
  parseNameAddr,
  parseUri,
  responseTo,
  serializeMessage,
  topViaBranch,
  type SipRequest,
  type SipResponse,
} from './message.ts';
import { readOffer, writeAnswer } from './sdp.ts';

/** Participant attributes LiveKit's SIP service sets. */
export const SIP_ATTRIBUTES = {
  callId: 'sip.callID',
  callIdFull: 'sip.callIDFull',
  phoneNumber: 'sip.phoneNumber',
  trunkId: 'sip.trunkID',
  trunkPhoneNumber: 'sip.trunkPhoneNumber',
  ruleId: 'sip.ruleID',
  callStatus: 'sip.callStatus',
} as const;

/** The trunks and rules, read on every INVITE (SipStore's in-memory copy). */
export interface SipRouting {
  inboundTrunks(): SIPInboundTrunkInfo[];
  rules(): SIPDispatchRuleInfo[];
}

/** The room as a call uses it: the mix's taps, and data delivery for DTMF. */
export type CallRoom = MixRoom & Pick<RoomImpl, 'deliver'>;

/** Joins a server-driven participant into a room (RoomManager.join with a sink that sends nothing). */
export type CallJoin = (req: JoinRequest) => Promise<{ participant: Participant; room: CallRoom }>;

/**
 * Topic of the data message a caller's DTMF key becomes for roomgate clients (JSON `{code, digit}`);
 * LiveKit clients get LiveKit's own SipDTMF packet (RoomEvent.DtmfReceived) instead.
 */
export const DTMF_TOPIC = 'sip.dtmf';

export interface SipServerOptions {
  port: number;
  /** Address of the SIP socket and of the calls' RTP sockets. */
  bind: string;
  /** Address written into SDP answers and Contact headers. */
  announcedIp: string;
  maxCalls: number;
  routing: SipRouting;
  join: CallJoin;
  log: Logger;
}

const ALLOW = 'INVITE, ACK, BYE, CANCEL, OPTIONS';
const USER_PART = /^[\w+*#.\-]{1,64}$/;
const T1 = 500;
const T2 = 4000;
const TIMER_B = 64 * T1;

type Peer = { address: string; port: number };

interface Call {
  readonly id: string;
  readonly callId: string;
  readonly inviteBranch: string;
  readonly invite: SipRequest;
  readonly peer: Peer;
  readonly localTag: string;
  readonly room: string;
  readonly identity: string;
  state: 'setup' | 'answered' | 'confirmed' | 'ended';
  /** The last response to the INVITE, re-sent when the INVITE comes again. */
  lastResponse: SipResponse | undefined;
  media: CallMedia | undefined;
  mix: CallMix | undefined;
  participant: Participant | undefined;
  timers: Set<NodeJS.Timeout>;
}

export class SipServer {
  readonly #opts: SipServerOptions;
  readonly #socket = dgram.createSocket('udp4');
  readonly #auth = new DigestAuth('roomgate');
  readonly #calls = new Map<string, Call>();
  /** Our BYEs awaiting their 200: branch → stop re-sending. */
  readonly #byes = new Map<string, () => void>();
  readonly #log: Logger;
  #closed = false;
  #socketOpen = false;

  constructor(opts: SipServerOptions) {
    this.#opts = opts;
    this.#log = opts.log;
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** Calls in progress (setup or answered). */
  get callCount(): number {
    return this.#calls.size;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#socket.once('error', reject);
      this.#socket.bind(this.#opts.port, this.#opts.bind, () => {
        this.#socket.off('error', reject);
        this.#socketOpen = true;
        resolve();
      });
    });
    this.#socket.on('error', (err) => this.#log.warn({ err: err.message }, 'SIP socket error'));
    this.#socket.on('message', (msg, rinfo) => {
      try {
        this.#onMessage(msg, { address: rinfo.address, port: rinfo.port });
      } catch (err) {
        // A bug here must cost one datagram, never the listener.
        this.#log.error({ err }, 'SIP message handling failed');
      }
    });
    this.#log.info({ port: this.port, bind: this.#opts.bind }, 'SIP listener started');
  }

  /** Ends every call (BYE to each caller) and closes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#calls.values()].map((c) => this.#end(c, 'gateway shutting down', true)));
    // A moment for the BYEs to leave before the socket goes.
    await new Promise((r) => setTimeout(r, 50));
    for (const stop of [...this.#byes.values()]) stop();
    if (this.#socketOpen) this.#socket.close();
    this.#socketOpen = false;
  }

  #send(text: string, to: Peer): void {
    if (!this.#socketOpen) return;
    this.#socket.send(text, to.port, to.address, (err) => {
      if (err) this.#log.debug({ err: err.message }, 'SIP send failed');
    });
  }

  #respond(req: SipRequest, to: Peer, status: number, reason: string, opts: Parameters<typeof responseTo>[3] = {}): SipResponse {
    const res = responseTo(req, status, reason, opts);
    this.#send(serializeMessage(res), to);
    return res;
  }

  #onMessage(buf: Buffer, from: Peer): void {
    const msg = parseMessage(buf);
    if (!msg) {
      // Keep-alive CRLFs (RFC 5626) are not worth a log line.
      if (buf.toString('latin1').trim() !== '') this.#log.debug({ from: from.address, bytes: buf.length }, 'malformed SIP datagram dropped');
      return;
    }
    if (msg.kind === 'response') {
      const branch = topViaBranch(msg);
      if (branch && msg.status >= 200) this.#byes.get(branch)?.();
      return;
    }
    // Without these a response cannot be addressed (§8.1.1); such a request is dropped.
    const cseq = parseCSeq(msg);
    if (!cseq || !header(msg, 'Call-ID') || !header(msg, 'From') || !header(msg, 'To') || !topViaBranch(msg)) {
      this.#log.debug({ from: from.address, method: msg.method }, 'SIP request without its mandatory headers dropped');
      return;
    }
    switch (msg.method) {
      case 'INVITE':
        return this.#onInvite(msg, from);
      case 'ACK':
        return this.#onAck(msg);
      case 'BYE':
        return this.#onBye(msg, from);
      case 'CANCEL':
        return this.#onCancel(msg, from);
      case 'OPTIONS':
        this.#respond(msg, from, 200, 'OK', { toTag: randomTag(), headers: [['Allow', ALLOW], ['Accept', 'application/sdp']] });
        return;
      default:
        this.#respond(msg, from, 405, 'Method Not Allowed', { toTag: randomTag(), headers: [['Allow', ALLOW]] });
    }
  }

  #onInvite(req: SipRequest, from: Peer): void {
    const callId = header(req, 'Call-ID')!;
    const branch = topViaBranch(req)!;
    const existing = this.#calls.get(callId);
    if (existing) {
      if (existing.inviteBranch === branch) {
        // A retransmission: the answer it missed.
        if (existing.lastResponse) this.#send(serializeMessage(existing.lastResponse), from);
        return;
      }
      // A re-INVITE (session refresh, hold): the media stays as it is, the same answer again.
      if (existing.state === 'answered' || existing.state === 'confirmed') {
        const answer = existing.lastResponse?.status === 200 ? existing.lastResponse.body : '';
        this.#respond(req, from, 200, 'OK', { toTag: existing.localTag, headers: this.#answerHeaders(), body: answer });
      } else {
        this.#respond(req, from, 491, 'Request Pending', { toTag: existing.localTag });
      }
      return;
    }
    if (this.#closed) {
      this.#respond(req, from, 503, 'Service Unavailable', { toTag: randomTag() });
      return;
    }
    const localTag = randomTag();
    const trying = this.#respond(req, from, 100, 'Trying');
    const fail = (status: number, reason: string, extra: [string, string][] = []) => {
      this.#log.info({ callId, status, reason, from: from.address }, 'SIP call refused');
      this.#respond(req, from, status, reason, { toTag: localTag, headers: extra });
    };
    const fromAddr = parseNameAddr(header(req, 'From'));
    const toUri = parseUri(req.uri) ?? parseUri(parseNameAddr(header(req, 'To'))?.uri ?? '');
    const callerUri = fromAddr ? parseUri(fromAddr.uri) : undefined;
    if (!toUri || !callerUri || !fromAddr?.params.get('tag')) return fail(400, 'Bad Request');
    // The user parts become room names and identities: phone numbers and plain SIP user names only.
    if (!USER_PART.test(toUri.user) || !USER_PART.test(callerUri.user)) return fail(400, 'Bad Request');
    const who: CallIdentity = { called: toUri.user, caller: callerUri.user, source: from.address };
    if (this.#calls.size >= this.#opts.maxCalls) return fail(486, 'Busy Here');
    if (header(req, 'Content-Type')?.split(';')[0]?.trim().toLowerCase() !== 'application/sdp') return fail(488, 'Not Acceptable Here');
    const offer = readOffer(req.body);
    if (!offer) return fail(488, 'Not Acceptable Here');
    const trunk = matchTrunk(this.#opts.routing.inboundTrunks(), who);
    if (!trunk) return fail(404, 'Not Found');
    if (trunk.authUsername) {
      const authorization = header(req, 'Authorization');
      const verdict = authorization
        ? this.#auth.verify(authorization, 'INVITE', { username: trunk.authUsername, password: trunk.authPassword })
        : 'missing';
      if (verdict === 'bad') return fail(403, 'Forbidden');
      if (verdict !== 'ok') {
        const challenge = this.#auth.challenge() + (verdict === 'stale' ? ', stale=true' : '');
        return fail(401, 'Unauthorized', [['WWW-Authenticate', challenge]]);
      }
    }
    const rule = matchRule(this.#opts.routing.rules(), trunk.sipTrunkId, who);
    const dest = rule ? destination(rule, who) : undefined;
    if (!rule || !dest) return fail(404, 'Not Found');
    // PIN entry needs a prompt the caller hears; until then a rule with a PIN takes no calls.
    if (dest.pin) return fail(501, 'Not Implemented');

    const call: Call = {
      id: newId('SCL_'),
      callId,
      inviteBranch: branch,
      invite: req,
      peer: from,
      localTag,
      room: dest.room,
      identity: `sip_${rule.hidePhoneNumber ? newId('SCL_', 8).slice(4) : who.caller}`,
      state: 'setup',
      lastResponse: trying,
      media: undefined,
      mix: undefined,
      participant: undefined,
      timers: new Set(),
    };
    this.#calls.set(callId, call);
    call.lastResponse = this.#respond(req, from, 180, 'Ringing', { toTag: localTag });
    this.#answer(call, offer, trunk, rule, who).catch((err: unknown) => {
      if (err instanceof ApiError) this.#log.info({ callId, room: call.room, code: err.code, msg: err.message }, 'SIP call refused by the room');
      else this.#log.error({ err, callId, room: call.room }, 'SIP call setup failed');
      if (call.state === 'setup') {
        // A full room is busy; a room hosted elsewhere or a gateway shutting down is unavailable
        // (the caller may retry); anything else is our failure.
        const code = err instanceof ApiError ? err.code : undefined;
        const [status, reason] = code === 'resource_exhausted' ? [486, 'Busy Here'] : code === 'unavailable' ? [503, 'Service Unavailable'] : [500, 'Server Internal Error'];
        call.lastResponse = this.#respond(req, from, status, reason, { toTag: localTag });
      }
      this.#hangup(call, 'setup failed', false);
    });
  }

  #answerHeaders(): [string, string][] {
    return [
      ['Contact', `<sip:roomgate@${this.#opts.announcedIp}:${this.port}>`],
      ['Allow', ALLOW],
      ['Content-Type', 'application/sdp'],
    ];
  }

  async #answer(call: Call, offer: NonNullable<ReturnType<typeof readOffer>>, trunk: SIPInboundTrunkInfo, rule: SIPDispatchRuleInfo, who: CallIdentity): Promise<void> {
    const log = this.#log.child({ call: call.id, room: call.room });
    const media = await CallMedia.open(this.#opts.bind, offer, log);
    call.media = media;
    if (call.state === 'ended') return void (await media.stop());
    const attributes: Record<string, string> = {
      ...rule.attributes,
      [SIP_ATTRIBUTES.callId]: call.id,
      [SIP_ATTRIBUTES.callIdFull]: call.callId,
      [SIP_ATTRIBUTES.trunkId]: trunk.sipTrunkId,
      [SIP_ATTRIBUTES.ruleId]: rule.sipDispatchRuleId,
      [SIP_ATTRIBUTES.trunkPhoneNumber]: who.called,
      [SIP_ATTRIBUTES.callStatus]: 'active',
      ...(rule.hidePhoneNumber ? {} : { [SIP_ATTRIBUTES.phoneNumber]: who.caller }),
    };
    const { participant, room } = await this.#opts.join({
      room: call.room,
      identity: call.identity,
      name: rule.hidePhoneNumber ? 'Phone call' : `Phone ${who.caller}`,
      metadata: rule.metadata,
      attributes,
      permission: new ParticipantPermission({ canPublish: true, canSubscribe: true, canPublishData: true }),
      kind: ParticipantInfo_Kind.SIP,
    });
    call.participant = participant;
    // Removed (RemoveParticipant), the room deleted or closed, the identity taken: hang up.
    participant.once('@close', (reason) => {
      if (reason !== 'CLIENT_INITIATED') this.#hangup(call, `participant left: ${reason}`, true);
    });
    // The caller may have cancelled while the room was joined (TypeScript cannot see that).
    if (isEnded(call)) {
      participant.close('CLIENT_INITIATED');
      return;
    }
    media.on('dtmf', (code, digit) => {
      const packet = new DataPacket({
        kind: DataPacket_Kind.RELIABLE,
        participantIdentity: call.identity,
        value: { case: 'sipDtmf', value: new SipDTMF({ code, digit }) },
      });
      const payload = Buffer.from(JSON.stringify({ code, digit }));
      const n = room.deliver(payload, DTMF_TOPIC, [], call.identity, true, { packet: packet.toBinary(), fromSid: participant.sid });
      log.debug({ digit, recipients: n }, 'DTMF from the caller');
    });
    media.on('failed', (error) => {
      log.warn({ error }, 'call media failed');
      this.#hangup(call, 'media failed', true);
    });
    await media.start(participant);
    if (call.state !== 'setup') return;
    // The caller hears everyone else in the room, from the moment it is answered.
    call.mix = new CallMix({ room, selfIdentity: call.identity, codec: offer.codec, send: (p) => media.sendAudio(p), log });
    const answer = writeAnswer(offer, { address: this.#opts.announcedIp, port: media.port, sessionId: randomInt(1, 2 ** 31) });
    call.state = 'answered';
    call.lastResponse = this.#respond(call.invite, call.peer, 200, 'OK', { toTag: call.localTag, headers: this.#answerHeaders(), body: answer });
    call.mix.start();
    log.info({ caller: who.caller, called: who.called, trunk: trunk.sipTrunkId, codec: offer.codec }, 'SIP call answered');
    this.#retransmit200(call, T1, 0);
  }

  /** Re-sends the 200 until the ACK; no ACK in 64·T1 ends the call (§13.3.1.4). */
  #retransmit200(call: Call, interval: number, elapsed: number): void {
    const timer = setTimeout(() => {
      call.timers.delete(timer);
      if (call.state !== 'answered') return;
      if (elapsed + interval >= TIMER_B) {
        this.#hangup(call, 'no ACK for the 200', true);
        return;
      }
      if (call.lastResponse) this.#send(serializeMessage(call.lastResponse), call.peer);
      this.#retransmit200(call, Math.min(interval * 2, T2), elapsed + interval);
    }, interval);
    timer.unref();
    call.timers.add(timer);
  }

  #onAck(req: SipRequest): void {
    const call = this.#calls.get(header(req, 'Call-ID')!);
    if (call?.state === 'answered') call.state = 'confirmed';
  }

  #onBye(req: SipRequest, from: Peer): void {
    const call = this.#calls.get(header(req, 'Call-ID')!);
    if (!call || call.state === 'setup') {
      this.#respond(req, from, 481, 'Call/Transaction Does Not Exist');
      return;
    }
    this.#respond(req, from, 200, 'OK');
    this.#hangup(call, 'caller hung up', false);
  }

  #onCancel(req: SipRequest, from: Peer): void {
    const call = this.#calls.get(header(req, 'Call-ID')!);
    if (!call || call.inviteBranch !== topViaBranch(req)) {
      this.#respond(req, from, 481, 'Call/Transaction Does Not Exist');
      return;
    }
    this.#respond(req, from, 200, 'OK', { toTag: call.localTag });
    if (call.state !== 'setup') return; // answered already: the caller sends BYE
    call.lastResponse = this.#respond(call.invite, call.peer, 487, 'Request Terminated', { toTag: call.localTag });
    this.#hangup(call, 'caller cancelled', false);
  }

  #hangup(call: Call, reason: string, sendBye: boolean): void {
    this.#end(call, reason, sendBye).catch((err: unknown) => this.#log.error({ err, call: call.id }, 'ending a SIP call failed'));
  }

  /** Ends a call once: media stopped, participant gone, and a BYE to the caller when we hang up. */
  async #end(call: Call, reason: string, sendBye: boolean): Promise<void> {
    if (call.state === 'ended') return;
    const wasUp = call.state === 'answered' || call.state === 'confirmed';
    call.state = 'ended';
    for (const t of call.timers) clearTimeout(t);
    call.timers.clear();
    this.#calls.delete(call.callId);
    if (sendBye && wasUp) this.#sendBye(call);
    // As LiveKit does: the room sees the call hang up before the participant leaves.
    if (call.participant && !call.participant.closed) call.participant.applyUpdate({ attributes: { [SIP_ATTRIBUTES.callStatus]: 'hangup' } });
    call.participant?.close('CLIENT_INITIATED');
    await Promise.all([call.media?.stop(), call.mix?.close()]);
    this.#log.info({ call: call.id, room: call.room, reason }, 'SIP call ended');
  }

  #sendBye(call: Call): void {
    const branch = `z9hG4bK${randomBytes(8).toString('hex')}`;
    const from = header(call.invite, 'From')!;
    const to = header(call.invite, 'To')!;
    const contact = parseNameAddr(header(call.invite, 'Contact'))?.uri ?? parseNameAddr(from)!.uri;
    const bye = serializeMessage({
      kind: 'request',
      method: 'BYE',
      uri: contact,
      headers: new Map([
        ['Via', [`SIP/2.0/UDP ${this.#opts.announcedIp}:${this.port};branch=${branch};rport`]],
        ['Max-Forwards', ['70']],
        // Our side of the dialog: the INVITE's To with our tag, to its From (§15.1.1).
        ['From', [parseNameAddr(to)?.params.has('tag') ? to : `${to};tag=${call.localTag}`]],
        ['To', [from]],
        ['Call-ID', [call.callId]],
        ['CSeq', ['1 BYE']],
        ['User-Agent', ['roomgate']],
      ]),
      body: '',
    });
    let tries = 0;
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      clearTimeout(timer);
      this.#byes.delete(branch);
    };
    const attempt = (interval: number) => {
      this.#send(bye, call.peer);
      if (++tries >= 7) return void setTimeout(stop, interval).unref();
      timer = setTimeout(() => attempt(Math.min(interval * 2, T2)), interval);
      timer.unref();
    };
    this.#byes.set(branch, stop);
    attempt(T1);
  }
}

const isEnded = (call: Call): boolean => call.state === 'ended';

function randomTag(): string {
  return randomBytes(6).toString('hex');
}
