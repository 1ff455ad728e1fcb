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
import { lookup } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { DataPacket, DataPacket_Kind, ParticipantInfo_Kind, ParticipantPermission, SipDTMF, type SIPDispatchRuleInfo, type SIPInboundTrunkInfo } from '@livekit/protocol';
import { ApiError, type TwirpCode } from '../errors.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { Participant } from '../sfu/Participant.ts';
import type { RoomImpl } from '../sfu/Room.ts';
import type { RoomData } from '../sfu/ParticipantTypes.ts';
import type { JoinRequest } from '../sfu/RoomTypes.ts';
import { CallMedia } from './CallMedia.ts';
import { CallMix, type MixRoom } from './CallMix.ts';
import { encodeG711 } from './g711.ts';
import { DigestAuth, digestAnswer } from './digest.ts';
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
import { readOffer, writeAnswer, writeOffer, type CallOffer } from './sdp.ts';

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

const ALLOW = 'INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY';
const USER_PART = /^[\w+*#.\-]{1,64}$/;
const T1 = 500;
const T2 = 4000;
const TIMER_B = 64 * T1;
/** How long a caller has to type a rule's PIN and #. */
const PIN_TIMEOUT_MS = 30_000;
const MAX_PIN_DIGITS = 32;

type Peer = { address: string; port: number };

/** What CreateSIPParticipant asks for: whom to call through which trunk, and the participant it becomes. */
export interface DialRequest {
  trunkId: string;
  /** The trunk's SIP server: `host` or `host:port` (5060). */
  address: string;
  auth: { username: string; password: string } | undefined;
  /** The number called and the number we call from (the trunk's). */
  to: string;
  from: string;
  room: string;
  identity: string;
  name: string;
  metadata: string;
  attributes: Record<string, string>;
  hidePhoneNumber: boolean;
  ringingTimeoutMs: number;
  /** 0: no limit. */
  maxCallDurationMs: number;
  /** Keys to press once answered (LiveKit's `dtmf`; 'w' waits half a second). */
  dtmf: string;
}

export interface DialledCall {
  sipCallId: string;
  participantId: string;
  participantIdentity: string;
  roomName: string;
  /** Settles when the far end answers; rejects (ApiError with the SIP status in meta) when it does not. */
  answered: Promise<void>;
}

/** Our INVITE of a call we place (the client transaction, RFC 3261 §17.1.1), and its outcome. */
interface OutInvite {
  readonly uri: string;
  /** Our From (with our tag) and the To as dialled (no tag). */
  readonly from: string;
  readonly to: string;
  readonly auth: { username: string; password: string } | undefined;
  branch: string;
  cseq: number;
  request: string;
  /** A challenge (401/407) was answered already: a second one fails the call. */
  authTried: boolean;
  provisional: boolean;
  final: boolean;
  cancel: 'no' | 'wanted' | 'sent';
  /** The ACK of the 200, sent again when the 200 is. */
  ack: string | undefined;
  retransmit: NodeJS.Timeout | undefined;
  settled: boolean;
  resolve: () => void;
  reject: (err: ApiError) => void;
}

interface Call {
  readonly id: string;
  readonly callId: string;
  readonly direction: 'inbound' | 'outbound';
  /** Inbound: the caller's INVITE branch (retransmissions and CANCEL match it). */
  readonly inviteBranch: string;
  /** Inbound: the caller's INVITE. */
  readonly invite: SipRequest | undefined;
  /** Outbound: our INVITE. */
  readonly out: OutInvite | undefined;
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
  /** Our SDP (offer or answer), given again to a re-INVITE. */
  localSdp: string;
  /** The dialog once established: our From and their To for requests we send, where they go, our CSeq. */
  dialog: { local: string; remote: string; target: string; cseq: number } | undefined;
}

export class SipServer {
  readonly #opts: SipServerOptions;
  readonly #socket = dgram.createSocket('udp4');
  readonly #auth = new DigestAuth('roomgate');
  readonly #calls = new Map<string, Call>();
  /** Our BYEs and CANCELs awaiting their final response: branch → stop re-sending. */
  readonly #byes = new Map<string, () => void>();
  /** Our INVITEs by Call-ID, until their call ends (a 200 sent again must be ACKed again). */
  readonly #outInvites = new Map<string, { call: Call; out: OutInvite }>();
  /** Transfers under way (our REFER, then the far end's NOTIFYs), by Call-ID. */
  readonly #transfers = new Map<string, Transfer>();
  /** Each call's room, while its participant is in it (the mix of a call we place starts at the answer). */
  readonly #rooms = new Map<string, CallRoom>();
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
      const cseq = parseCSeq(msg);
      if (cseq?.method === 'INVITE') {
        const entry = this.#outInvites.get(header(msg, 'Call-ID') ?? '');
        if (entry) this.#onInviteResponse(entry.call, entry.out, msg, cseq.seq);
        return;
      }
      if (branch && msg.status >= 200) this.#byes.get(branch)?.();
      if (cseq?.method === 'REFER') this.#transfers.get(header(msg, 'Call-ID') ?? '')?.onReferResponse(msg.status, msg.reason);
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
      case 'NOTIFY':
        return this.#onNotify(msg, from);
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
        this.#respond(req, from, 200, 'OK', { toTag: existing.localTag, headers: this.#answerHeaders(), body: existing.localSdp });
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

    const call: Call = {
      id: newId('SCL_'),
      callId,
      direction: 'inbound',
      inviteBranch: branch,
      invite: req,
      out: undefined,
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
      localSdp: '',
      dialog: undefined,
    };
    this.#calls.set(callId, call);
    call.lastResponse = this.#respond(req, from, 180, 'Ringing', { toTag: localTag });
    this.#answer(call, offer, trunk, rule, who, dest.pin).catch((err: unknown) => {
      if (err instanceof ApiError) this.#log.info({ callId, room: call.room, code: err.code, msg: err.message }, 'SIP call refused by the room');
      else this.#log.error({ err, callId, room: call.room }, 'SIP call setup failed');
      if (call.state === 'setup') {
        // A full room is busy; a room hosted elsewhere or a gateway shutting down is unavailable
        // (the caller may retry); anything else is our failure.
        const code = err instanceof ApiError ? err.code : undefined;
        const [status, reason] = code === 'resource_exhausted' ? [486, 'Busy Here'] : code === 'unavailable' ? [503, 'Service Unavailable'] : [500, 'Server Internal Error'];
        call.lastResponse = this.#respond(req, from, status, reason, { toTag: localTag });
      }
      // Answered already (a PIN was asked for): hang up with BYE.
      this.#hangup(call, 'setup failed', call.state !== 'setup');
    });
  }

  #answerHeaders(): [string, string][] {
    return [
      ['Contact', `<sip:roomgate@${this.#opts.announcedIp}:${this.port}>`],
      ['Allow', ALLOW],
      ['Content-Type', 'application/sdp'],
    ];
  }

  /**
   * Joins the caller into the room and answers. A rule with a PIN answers first and asks for it
   * (a beep, then the digits and #, as LiveKit's rules take them): a wrong or missing PIN hangs up
   * before anyone in the room sees the call.
   */
  async #answer(call: Call, offer: CallOffer, trunk: SIPInboundTrunkInfo, rule: SIPDispatchRuleInfo, who: CallIdentity, pin: string): Promise<void> {
    const log = this.#log.child({ call: call.id, room: call.room });
    const media = await CallMedia.open(this.#opts.bind, offer, log);
    call.media = media;
    if (call.state === 'ended') return void (await media.stop());
    if (pin) {
      this.#send200(call, offer, media);
      const entered = await this.#collectPin(call, media, offer, log);
      if (isEnded(call)) return;
      if (entered !== pin) {
        log.info({ caller: who.caller, entered: entered === undefined ? 'none' : 'wrong' }, 'SIP call refused: PIN');
        this.#hangup(call, entered === undefined ? 'no PIN entered' : 'wrong PIN', true);
        return;
      }
    }
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
    this.#wire(call, participant, room, media, log);
    // The caller may have hung up while the room was joined (TypeScript cannot see that).
    if (isEnded(call)) {
      participant.close('CLIENT_INITIATED');
      return;
    }
    await media.start(participant);
    if (isEnded(call) || (!pin && call.state !== 'setup')) return;
    // The caller hears everyone else in the room, from the moment it is answered.
    call.mix = new CallMix({ room, selfIdentity: call.identity, codec: offer.codec, send: (p) => media.sendAudio(p), log });
    if (!pin) this.#send200(call, offer, media);
    call.mix.start();
    log.info({ caller: who.caller, called: who.called, trunk: trunk.sipTrunkId, codec: offer.codec, pin: !!pin }, 'SIP call answered');
  }

  /** The 200 with our SDP answer, re-sent until the ACK; the dialog starts here. */
  #send200(call: Call, offer: CallOffer, media: CallMedia): void {
    const answer = writeAnswer(offer, { address: this.#opts.announcedIp, port: media.port, sessionId: randomInt(1, 2 ** 31) });
    call.state = 'answered';
    call.localSdp = answer;
    const invite = call.invite!;
    const to = header(invite, 'To')!;
    call.dialog = {
      // Our side of the dialog: the INVITE's To with our tag, to its From (§12.1.1).
      local: parseNameAddr(to)?.params.has('tag') ? to : `${to};tag=${call.localTag}`,
      remote: header(invite, 'From')!,
      target: parseNameAddr(header(invite, 'Contact'))?.uri ?? parseNameAddr(header(invite, 'From'))!.uri,
      cseq: 0,
    };
    call.lastResponse = this.#respond(invite, call.peer, 200, 'OK', { toTag: call.localTag, headers: this.#answerHeaders(), body: answer });
    this.#retransmit200(call, T1, 0);
  }

  /**
   * The digits the caller types up to #, or undefined when none come within PIN_TIMEOUT_MS or the
   * call ends. The caller hears a 440 Hz beep, then silence (phones expect a steady stream).
   */
  async #collectPin(call: Call, media: CallMedia, offer: CallOffer, log: Logger): Promise<string | undefined> {
    media.listen();
    const beep = Int16Array.from({ length: 160 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000)));
    const frames = { beep: encodeG711(beep, offer.codec), silence: encodeG711(new Int16Array(160), offer.codec) };
    let sent = 0;
    const started = Date.now();
    const ticker = setInterval(() => {
      // Every 20 ms frame due is sent, however late the timer runs; the first 300 ms beep.
      for (const due = Math.floor((Date.now() - started) / 20); sent < due; sent++) media.sendAudio(sent < 15 ? frames.beep : frames.silence);
    }, 10);
    let digits = '';
    try {
      return await new Promise<string | undefined>((resolve) => {
        const timer = setTimeout(() => finish(undefined), PIN_TIMEOUT_MS);
        timer.unref();
        const onKey = (_code: number, digit: string) => {
          if (digit !== '#') {
            digits = (digits + digit).slice(-MAX_PIN_DIGITS);
            return;
          }
          finish(digits);
        };
        // The caller may hang up (BYE, CANCEL of nothing: the call is answered) while typing.
        const ended = setInterval(() => {
          if (isEnded(call)) finish(undefined);
        }, 100);
        const finish = (value: string | undefined) => {
          clearTimeout(timer);
          clearInterval(ended);
          media.off('dtmf', onKey);
          resolve(value);
        };
        media.on('dtmf', onKey);
        log.debug('waiting for the PIN');
      });
    } finally {
      clearInterval(ticker);
    }
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
    if (!call?.invite || call.inviteBranch !== topViaBranch(req)) {
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
    this.#transfers.get(call.callId)?.end();
    const out = call.out;
    if (out) {
      // Hung up before the far end answered: CANCEL the INVITE (§9.1), and whoever waits is told.
      if (!out.final) this.#cancelInvite(call, out);
      settle(out, new ApiError('aborted', `the call ended before it was answered: ${reason}`));
      if (out.final) this.#outInvites.delete(call.callId);
    }
    // As LiveKit does: the room sees the call hang up before the participant leaves.
    if (call.participant && !call.participant.closed) call.participant.applyUpdate({ attributes: { [SIP_ATTRIBUTES.callStatus]: 'hangup' } });
    call.participant?.close('CLIENT_INITIATED');
    await Promise.all([call.media?.stop(), call.mix?.close()]);
    this.#log.info({ call: call.id, room: call.room, reason }, 'SIP call ended');
  }

  #sendBye(call: Call): void {
    const dialog = call.dialog;
    if (!dialog) return;
    const branch = newBranch();
    const bye = this.#request('BYE', dialog.target, branch, { from: dialog.local, to: dialog.remote, callId: call.callId, cseq: ++dialog.cseq }, [['User-Agent', ['roomgate']]]);
    this.#sendNonInvite(bye, branch, call.peer);
  }

  /**
   * A request of ours (BYE, CANCEL, ACK, INVITE, REFER): our Via with its branch, Max-Forwards and
   * the dialog's identifiers, then the method's own headers.
   */
  #request(method: string, uri: string, branch: string, ids: { from: string; to: string; callId: string; cseq: number }, extra: [string, string[]][] = [], body = ''): string {
    return serializeMessage({
      kind: 'request',
      method,
      uri,
      headers: new Map<string, string[]>([
        ['Via', [`SIP/2.0/UDP ${this.#opts.announcedIp}:${this.port};branch=${branch};rport`]],
        ['Max-Forwards', ['70']],
        ['From', [ids.from]],
        ['To', [ids.to]],
        ['Call-ID', [ids.callId]],
        ['CSeq', [`${ids.cseq} ${method}`]],
        ...extra,
      ]),
      body,
    });
  }

  /** Sends a BYE or CANCEL until its final response (Timer E, §17.1.2.2), at most 7 times. */
  #sendNonInvite(text: string, branch: string, to: Peer): void {
    let tries = 0;
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      clearTimeout(timer);
      this.#byes.delete(branch);
    };
    const attempt = (interval: number) => {
      this.#send(text, to);
      if (++tries >= 7) return void setTimeout(stop, interval).unref();
      timer = setTimeout(() => attempt(Math.min(interval * 2, T2)), interval);
      timer.unref();
    };
    this.#byes.set(branch, stop);
    attempt(T1);
  }

  // ---- calls we place (CreateSIPParticipant) -----------------------------------------------------

  /**
   * Dials `req.to` through an outbound trunk: the participant joins the room at once (callStatus
   * `dialing`), the INVITE goes out with our offer; 180/183 make it `ringing`, the 200 `active`
   * (media both ways), a refusal or no answer within the ringing timeout ends it.
   *
   *   INVITE → (401/407 → ACK, INVITE with the trunk's credentials) → 1xx → 200 ⇄ ACK
   *   removed / room deleted before the answer: CANCEL → 487 → ACK; after it: BYE
   */
  async dial(req: DialRequest): Promise<DialledCall> {
    if (this.#closed) throw new ApiError('unavailable', 'the SIP listener is shutting down');
    if (this.#calls.size >= this.#opts.maxCalls) throw new ApiError('resource_exhausted', `this gateway carries its most calls (sip.max_calls ${this.#opts.maxCalls})`);
    const peer = await resolvePeer(req.address);
    const callId = `${randomBytes(12).toString('hex')}@roomgate`;
    const log = this.#log.child({ call: callId, room: req.room, direction: 'outbound' });
    const media = await CallMedia.open(this.#opts.bind, undefined, log);
    const host = this.#opts.announcedIp;
    const uri = `sip:${req.to}@${req.address}`;
    let resolve!: () => void;
    let reject!: (err: ApiError) => void;
    const answered = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Whoever does not wait for the answer must not see an unhandled rejection.
    answered.catch(() => undefined);
    const localTag = randomTag();
    const out: OutInvite = {
      uri,
      from: `<sip:${req.from}@${host}>;tag=${localTag}`,
      to: `<sip:${req.to}@${req.address}>`,
      auth: req.auth,
      branch: newBranch(),
      cseq: 1,
      request: '',
      authTried: false,
      provisional: false,
      final: false,
      cancel: 'no',
      ack: undefined,
      retransmit: undefined,
      settled: false,
      resolve,
      reject,
    };
    const call: Call = {
      id: newId('SCL_'),
      callId,
      direction: 'outbound',
      inviteBranch: '',
      invite: undefined,
      out,
      peer,
      localTag,
      room: req.room,
      identity: req.identity,
      state: 'setup',
      lastResponse: undefined,
      media,
      mix: undefined,
      participant: undefined,
      timers: new Set(),
      localSdp: writeOffer({ address: host, port: media.port, sessionId: randomInt(1, 2 ** 31) }),
      dialog: undefined,
    };
    this.#calls.set(callId, call);
    let joined: Awaited<ReturnType<CallJoin>>;
    try {
      joined = await this.#opts.join({
        room: req.room,
        identity: req.identity,
        name: req.name || (req.hidePhoneNumber ? 'Phone call' : `Phone ${req.to}`),
        metadata: req.metadata,
        attributes: {
          ...req.attributes,
          [SIP_ATTRIBUTES.callId]: call.id,
          [SIP_ATTRIBUTES.callIdFull]: callId,
          [SIP_ATTRIBUTES.trunkId]: req.trunkId,
          [SIP_ATTRIBUTES.callStatus]: 'dialing',
          ...(req.hidePhoneNumber ? {} : { [SIP_ATTRIBUTES.phoneNumber]: req.to, [SIP_ATTRIBUTES.trunkPhoneNumber]: req.from }),
        },
        permission: new ParticipantPermission({ canPublish: true, canSubscribe: true, canPublishData: true }),
        kind: ParticipantInfo_Kind.SIP,
      });
    } catch (err) {
      this.#calls.delete(callId);
      await media.stop();
      throw err;
    }
    const { participant, room } = joined;
    call.participant = participant;
    this.#wire(call, participant, room, media, log);
    this.#outInvites.set(callId, { call, out });
    this.#sendInvite(call, out);
    this.#timer(call, req.ringingTimeoutMs, () => {
      if (call.state !== 'setup') return;
      settle(out, sipFailure(408, 'Request Timeout', `no answer within ${Math.round(req.ringingTimeoutMs / 1000)} s`));
      this.#hangup(call, 'no answer', false);
    });
    answered
      .then(() => {
        if (req.dtmf) media.sendDtmf(req.dtmf);
        if (req.maxCallDurationMs > 0) this.#timer(call, req.maxCallDurationMs, () => this.#hangup(call, 'max call duration reached', true));
      })
      .catch(() => undefined);
    log.info({ to: req.hidePhoneNumber ? undefined : req.to, trunk: req.trunkId, peer }, 'SIP call dialled');
    return { sipCallId: call.id, participantId: participant.sid, participantIdentity: participant.identity, roomName: req.room, answered };
  }

  #timer(call: Call, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      call.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    call.timers.add(t);
  }

  /** Sends (or re-sends, after a challenge) our INVITE, again every T1·2ⁿ until a response (Timer A). */
  #sendInvite(call: Call, out: OutInvite, authorization?: [string, string]): void {
    out.request = this.#request(
      'INVITE',
      out.uri,
      out.branch,
      { from: out.from, to: out.to, callId: call.callId, cseq: out.cseq },
      [
        ['Contact', [`<sip:roomgate@${this.#opts.announcedIp}:${this.port}>`]],
        ['Allow', [ALLOW]],
        ['User-Agent', ['roomgate']],
        ...(authorization ? [[authorization[0], [authorization[1]]] as [string, string[]]] : []),
        ['Content-Type', ['application/sdp']],
      ],
      call.localSdp,
    );
    clearTimeout(out.retransmit);
    const attempt = (interval: number, elapsed: number) => {
      if (elapsed >= TIMER_B) {
        // No response at all (Timer B): the trunk is unreachable.
        settle(out, sipFailure(408, 'Request Timeout', `no response from ${call.peer.address}:${call.peer.port}`));
        out.final = true;
        this.#outInvites.delete(call.callId);
        this.#hangup(call, 'the trunk does not answer', false);
        return;
      }
      this.#send(out.request, call.peer);
      out.retransmit = setTimeout(() => attempt(interval * 2, elapsed + interval), interval);
      out.retransmit.unref();
    };
    attempt(T1, 0);
  }

  #onInviteResponse(call: Call, out: OutInvite, res: SipResponse, seq: number): void {
    if (seq !== out.cseq) return; // a late answer to the INVITE we sent before a challenge
    if (out.final) {
      // A final response again: its ACK was lost (§17.1.1.2 for errors, §13.2.2.4 for the 200).
      if (res.status >= 300) this.#send(this.#errorAck(call, out, res), call.peer);
      else if (res.status >= 200 && out.ack) this.#send(out.ack, call.peer);
      return;
    }
    clearTimeout(out.retransmit);
    if (res.status < 200) {
      out.provisional = true;
      if (out.cancel === 'wanted') this.#sendCancel(call, out);
      if ((res.status === 180 || res.status === 183) && call.state === 'setup' && call.participant?.info().attributes[SIP_ATTRIBUTES.callStatus] === 'dialing') {
        call.participant.applyUpdate({ attributes: { [SIP_ATTRIBUTES.callStatus]: 'ringing' } });
      }
      return;
    }
    out.final = true;
    if (res.status >= 300) {
      this.#send(this.#errorAck(call, out, res), call.peer);
      const challenge = res.status === 401 ? header(res, 'WWW-Authenticate') : res.status === 407 ? header(res, 'Proxy-Authenticate') : undefined;
      if (challenge && out.auth && !out.authTried && call.state === 'setup' && out.cancel === 'no') {
        // Answer the challenge once with the trunk's credentials: a new transaction, CSeq + 1 (§22.2).
        out.authTried = true;
        out.final = false;
        out.provisional = false;
        out.cseq++;
        out.branch = newBranch();
        const value = digestAnswer(challenge, { method: 'INVITE', uri: out.uri, ...out.auth });
        this.#sendInvite(call, out, [res.status === 401 ? 'Authorization' : 'Proxy-Authorization', value]);
        return;
      }
      this.#outInvites.delete(call.callId);
      settle(out, sipFailure(res.status, res.reason));
      this.#hangup(call, `the far end answered ${res.status} ${res.reason}`, false);
      return;
    }
    const contact = parseNameAddr(header(res, 'Contact'))?.uri ?? out.uri;
    call.dialog = { local: out.from, remote: header(res, 'To') ?? out.to, target: contact, cseq: out.cseq };
    const ackBranch = newBranch();
    out.ack = this.#request('ACK', contact, ackBranch, { from: call.dialog.local, to: call.dialog.remote, callId: call.callId, cseq: out.cseq });
    this.#send(out.ack, call.peer);
    if (call.state !== 'setup') {
      // Answered just as we gave up: the call is confirmed and ended at once (§9.1, §15).
      this.#sendBye(call);
      return;
    }
    const answer = readOffer(res.body);
    if (!answer) {
      this.#sendBye(call);
      settle(out, sipFailure(488, 'Not Acceptable Here', 'the answer has no G.711 audio'));
      this.#hangup(call, 'no usable SDP answer', false);
      return;
    }
    call.state = 'confirmed';
    this.#connect(call, answer)
      .then(() => settle(out))
      .catch((err: unknown) => {
        this.#log.error({ err, call: call.id }, 'starting the media of an answered call failed');
        settle(out, new ApiError('internal', 'the call was answered but its media could not start'));
        this.#hangup(call, 'media failed', true);
      });
  }

  /** Media both ways once the far end answered: its audio published, the room's mix sent to it. */
  async #connect(call: Call, answer: CallOffer): Promise<void> {
    const media = call.media!;
    const participant = call.participant!;
    media.setRemote(answer);
    // A re-INVITE from the phone gets what was agreed (its codec), not our first offer of three.
    call.localSdp = writeAnswer(answer, { address: this.#opts.announcedIp, port: media.port, sessionId: randomInt(1, 2 ** 31) });
    await media.start(participant);
    if (isEnded(call)) return;
    const room = this.#rooms.get(call.callId);
    if (!room) return;
    call.mix = new CallMix({ room, selfIdentity: call.identity, codec: answer.codec, send: (p) => media.sendAudio(p), log: this.#log.child({ call: call.id }) });
    call.mix.start();
    participant.applyUpdate({ attributes: { [SIP_ATTRIBUTES.callStatus]: 'active' } });
    this.#log.info({ call: call.id, room: call.room, codec: answer.codec }, 'SIP call answered by the far end');
  }

  /** ACK of a non-2xx final response: the INVITE's branch, the response's To (§17.1.1.3). */
  #errorAck(call: Call, out: OutInvite, res: SipResponse): string {
    return this.#request('ACK', out.uri, out.branch, { from: out.from, to: header(res, 'To') ?? out.to, callId: call.callId, cseq: out.cseq });
  }

  /** CANCEL once a provisional response came (before it, §9.1 forbids it: it is sent at the 1xx). */
  #cancelInvite(call: Call, out: OutInvite): void {
    if (out.cancel !== 'no') return;
    out.cancel = 'wanted';
    if (out.provisional) this.#sendCancel(call, out);
    // The transaction is kept for the 487 (to ACK it) or a 200 that crossed the CANCEL, then dropped.
    setTimeout(() => {
      clearTimeout(out.retransmit);
      if (this.#outInvites.get(call.callId)?.out === out) this.#outInvites.delete(call.callId);
    }, TIMER_B).unref();
  }

  #sendCancel(call: Call, out: OutInvite): void {
    out.cancel = 'sent';
    const cancel = this.#request('CANCEL', out.uri, out.branch, { from: out.from, to: out.to, callId: call.callId, cseq: out.cseq });
    // The CANCEL shares the INVITE's branch; its own 200 stops the re-sending.
    this.#sendNonInvite(cancel, `${out.branch}`, call.peer);
  }

  // ---- transfer (REFER, RFC 3515) -----------------------------------------------------------------

  /**
   * Asks the phone of `identity`'s call to call `to` instead (blind transfer): REFER in the dialog,
   * 202, then NOTIFYs carrying the new call's progress as message/sipfrag. A 2xx there ends our call
   * (BYE, the participant leaves) and resolves; a refusal of the REFER or a failed new call rejects
   * and the call goes on.
   */
  async transfer(room: string, identity: string, to: string, timeoutMs: number): Promise<void> {
    const call = [...this.#calls.values()].find((c) => c.room === room && c.identity === identity);
    if (!call) throw new ApiError('not_found', `no SIP call of participant '${identity}' in room '${room}'`);
    const dialog = call.dialog;
    if (!dialog || (call.state !== 'answered' && call.state !== 'confirmed')) throw new ApiError('failed_precondition', 'the call is not answered yet: only an answered call can be transferred');
    if (this.#transfers.has(call.callId)) throw new ApiError('aborted', 'a transfer of this call is already under way');
    const branch = newBranch();
    const refer = this.#request('REFER', dialog.target, branch, { from: dialog.local, to: dialog.remote, callId: call.callId, cseq: ++dialog.cseq }, [
      ['Contact', [`<sip:roomgate@${this.#opts.announcedIp}:${this.port}>`]],
      ['Refer-To', [`<${to}>`]],
      ['Referred-By', [`<sip:roomgate@${this.#opts.announcedIp}:${this.port}>`]],
      ['User-Agent', ['roomgate']],
    ]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new ApiError('deadline_exceeded', `the transfer to ${to} did not complete within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      timer.unref();
      const done = (err?: ApiError) => {
        clearTimeout(timer);
        if (this.#transfers.get(call.callId) === transfer) this.#transfers.delete(call.callId);
        if (err) reject(err);
        else resolve();
      };
      const transfer: Transfer = {
        onReferResponse: (status, reason) => {
          if (status >= 300) done(sipFailure(status, reason, 'the phone refused the transfer'));
        },
        onProgress: (status, reason) => {
          if (status < 200) return;
          if (status >= 300) return done(sipFailure(status, reason, `the transfer target answered ${status}`));
          this.#log.info({ call: call.id, room, to }, 'SIP call transferred');
          done();
          this.#hangup(call, 'transferred', true);
        },
        end: () => done(new ApiError('aborted', 'the call ended before the transfer completed')),
      };
      this.#transfers.set(call.callId, transfer);
      this.#sendNonInvite(refer, branch, call.peer);
    });
  }

  #onNotify(req: SipRequest, from: Peer): void {
    const callId = header(req, 'Call-ID')!;
    const transfer = this.#transfers.get(callId);
    const event = header(req, 'Event')?.split(';')[0]?.trim().toLowerCase();
    if (!transfer || event !== 'refer') {
      this.#respond(req, from, 481, 'Subscription Does Not Exist');
      return;
    }
    this.#respond(req, from, 200, 'OK');
    // message/sipfrag (RFC 3420): the status line of the response the new call got.
    const frag = /^SIP\/2\.0 (\d{3}) ?([^\r\n]*)/.exec(req.body.trimStart());
    if (frag) transfer.onProgress(Number(frag[1]), frag[2] ?? '');
    else if (/terminated/i.test(header(req, 'Subscription-State') ?? '')) transfer.onProgress(500, 'transfer ended without a final status');
  }

  // ---- both directions ----------------------------------------------------------------------------

  /** What a call's participant and media do in the room, whichever side placed the call. */
  #wire(call: Call, participant: Participant, room: CallRoom, media: CallMedia, log: Logger): void {
    this.#rooms.set(call.callId, room);
    // Removed (RemoveParticipant), the room deleted or closed, the identity taken: hang up.
    participant.once('@close', (reason) => {
      this.#rooms.delete(call.callId);
      if (reason !== 'CLIENT_INITIATED') this.#hangup(call, `participant left: ${reason}`, true);
    });
    media.on('dtmf', (code, digit) => {
      const packet = new DataPacket({
        kind: DataPacket_Kind.RELIABLE,
        participantIdentity: call.identity,
        value: { case: 'sipDtmf', value: new SipDTMF({ code, digit }) },
      });
      const payload = Buffer.from(JSON.stringify({ code, digit }));
      const n = room.deliver(payload, DTMF_TOPIC, [], call.identity, true, { packet: packet.toBinary(), fromSid: participant.sid });
      log.debug({ digit, recipients: n }, 'DTMF from the phone');
    });
    media.on('failed', (error) => {
      log.warn({ error }, 'call media failed');
      this.#hangup(call, 'media failed', true);
    });
    // Data for the call's participant: a SipDTMF packet (livekit-client publishDtmf) or roomgate's
    // `sip.dtmf` message becomes key presses on the phone.
    participant.dataPath = {
      read: () => undefined,
      deliver: (m: RoomData) => {
        const digits = dtmfOf(m);
        if (!digits) return;
        if (call.state !== 'answered' && call.state !== 'confirmed') return void log.debug({ digits }, 'DTMF for a call not yet answered dropped');
        if (!media.sendDtmf(digits)) log.info({ digits }, 'DTMF dropped: the phone offered no telephone-event');
        else log.debug({ digits }, 'DTMF to the phone');
      },
    };
  }
}

/** The keys a room data message asks the phone to press; undefined when it is not DTMF. */
export function dtmfOf(m: RoomData): string | undefined {
  if (m.packet) {
    try {
      const packet = DataPacket.fromBinary(m.packet);
      if (packet.value.case === 'sipDtmf') {
        const { digit, code } = packet.value.value;
        return digit || '0123456789*#ABCD'[code];
      }
    } catch {
      // not a LiveKit packet: read it as roomgate's message below
    }
  }
  if (m.topic !== DTMF_TOPIC || !m.payload) return undefined;
  try {
    const body = JSON.parse(Buffer.from(m.payload).toString('utf8')) as { digit?: unknown; digits?: unknown };
    const keys = typeof body.digits === 'string' ? body.digits : typeof body.digit === 'string' ? body.digit : undefined;
    return keys && /^[0-9*#A-Dw]{1,64}$/i.test(keys) ? keys : undefined;
  } catch {
    return undefined;
  }
}

interface Transfer {
  onReferResponse(status: number, reason: string): void;
  /** A NOTIFY's sipfrag status. */
  onProgress(status: number, reason: string): void;
  /** The call ended meanwhile. */
  end(): void;
}

function settle(out: OutInvite, err?: ApiError): void {
  if (out.settled) return;
  out.settled = true;
  if (err) out.reject(err);
  else out.resolve();
}

/** LiveKit's Twirp code for a SIP final status (protocol livekit/sip.go), with the status in meta. */
export function sipFailure(status: number, reason: string, detail?: string): ApiError {
  const codes: Record<number, TwirpCode> = {
    403: 'permission_denied', 404: 'not_found', 408: 'deadline_exceeded', 480: 'resource_exhausted', 486: 'resource_exhausted',
    487: 'aborted', 488: 'invalid_argument', 600: 'resource_exhausted', 603: 'permission_denied', 604: 'not_found', 504: 'deadline_exceeded',
  };
  const code = codes[status] ?? (status >= 500 && status < 600 ? 'failed_precondition' : 'invalid_argument');
  return new ApiError(code, `sip status ${status}: ${reason}${detail ? ` (${detail})` : ''}`, { sip_status_code: String(status), sip_status: reason });
}

async function resolvePeer(address: string): Promise<Peer> {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(address);
  if (!m) throw new ApiError('invalid_argument', `trunk address '${address.slice(0, 80)}' is not host or host:port`, { field: 'address' });
  const port = m[2] ? Number(m[2]) : 5060;
  if (port < 1 || port > 65535) throw new ApiError('invalid_argument', `trunk address '${address}' has no valid port`, { field: 'address' });
  const host = m[1]!;
  if (isIPv4(host)) return { address: host, port };
  try {
    const { address: ip } = await lookup(host, { family: 4 });
    return { address: ip, port };
  } catch {
    throw new ApiError('unavailable', `the trunk's host '${host}' does not resolve to an IPv4 address`);
  }
}

function newBranch(): string {
  return `z9hG4bK${randomBytes(8).toString('hex')}`;
}

const isEnded = (call: Call): boolean => call.state === 'ended';

function randomTag(): string {
  return randomBytes(6).toString('hex');
}
