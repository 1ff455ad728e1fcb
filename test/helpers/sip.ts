// SIPp (Debian's sip-tester) as the phone in the SIP tests: a scenario file written per call, run
// headless against the gateway on loopback, G.711 audio streamed from a file by SIPp's rtp_stream.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RtpAudioDecoder, SAMPLE_RATE } from '../../src/agents/audio.ts';
import type { RemoteTrack } from '../../src/client/node.ts';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { scaled } from './deadline.ts';

/**
 * A UDP port free a moment ago on loopback. SIPp binds its SIP and media ports over UDP, and the
 * ephemeral range freePort (TCP) draws from overlaps the UDP ports mediasoup and FFmpeg hold.
 */
export async function freeUdpPort(): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const { port } = sock.address();
  await new Promise<void>((resolve) => sock.close(() => resolve()));
  return port;
}

export interface SippCall {
  /** The number dialled (Request-URI user). */
  called: string;
  caller: string;
  /** Digest credentials the phone answers a 401 with. */
  auth?: { username: string; password: string };
  /** The final response expected to the (authenticated) INVITE; 200 places the call, 487 cancels it at the 180. */
  expect: 200 | 403 | 404 | 486 | 487;
  /** After the 200: stream this μ-law file (raw, 8 kHz) in a loop. */
  audio?: string;
  /** After the ACK, a re-INVITE with the same offer (a session refresh); it must get 200 again. */
  reinvite?: boolean;
  /** SIPp's -rtp_echo: the audio the phone receives goes back to the gateway as its own. */
  echo?: boolean;
  /** Who hangs up: the phone after `holdMs`, or the gateway (the phone waits for its BYE). */
  hangup?: { by: 'phone'; holdMs: number } | { by: 'gateway' };
}

const SDP = `v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
`;

function invite(call: SippCall, cseq: number, auth: boolean): string {
  return `<send retrans="500"><![CDATA[
INVITE sip:${call.called}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:${call.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:${call.called}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: ${cseq} INVITE
Contact: <sip:phone@[local_ip]:[local_port]>
Max-Forwards: 70
${auth ? `[authentication username=${call.auth!.username} password=${call.auth!.password}]\n` : ''}Content-Type: application/sdp
Content-Length: [len]

${SDP}
]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
`;
}

/** ACK of a non-2xx final response: same branch as the INVITE (§17.1.1.3). */
const ackError = (call: SippCall, cseq: number) => `<send><![CDATA[
ACK sip:${call.called}@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: ${cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
`;

/**
 * A request of the phone inside the call, after the gateway's 200 (§12.2.1.1): the phone's From
 * and tag, the To the 200 came with (the gateway's tag), the call's Call-ID, this request's CSeq.
 */
function inDialog(call: SippCall, method: 'ACK' | 'INVITE' | 'BYE', cseq: number, opts: { contact?: boolean; sdp?: boolean; retrans?: boolean } = {}): string {
  return `<send${opts.retrans ? ' retrans="500"' : ''}><![CDATA[
${method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:${call.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: ${cseq} ${method}
${opts.contact ? 'Contact: <sip:phone@[local_ip]:[local_port]>\n' : ''}Max-Forwards: 70
${opts.sdp ? `Content-Type: application/sdp\nContent-Length: [len]\n\n${SDP}\n` : 'Content-Length: 0\n\n'}]]></send>`;
}

export function scenario(call: SippCall): string {
  const parts: string[] = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="roomgate test call">'];
  let cseq = 1;
  parts.push(invite(call, cseq, false));
  if (call.auth) {
    parts.push('<recv response="401" auth="true"/>', ackError(call, cseq));
    cseq++;
    parts.push(invite(call, cseq, true));
  }
  if (call.expect === 487) {
    // The phone gives up while it rings: CANCEL with the INVITE's branch (§9.1), 200 to it, 487 to the INVITE.
    parts.pop();
    parts.push(invite(call, cseq, !!call.auth).replace('<recv response="180" optional="true"/>', '<recv response="180"/>'));
    parts.push(`<send><![CDATA[
CANCEL sip:${call.called}@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:${call.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:${call.called}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: ${cseq} CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
<recv response="487"/>`, ackError(call, cseq), '</scenario>');
    return parts.join('\n');
  }
  if (call.expect !== 200) {
    parts.push(`<recv response="${call.expect}"/>`, ackError(call, cseq), '</scenario>');
    return parts.join('\n');
  }
  parts.push('<recv response="200" rrs="true"/>', inDialog(call, 'ACK', cseq, { contact: true }));
  if (call.reinvite) {
    cseq++;
    parts.push(inDialog(call, 'INVITE', cseq, { contact: true, sdp: true, retrans: true }), '<recv response="200"/>', inDialog(call, 'ACK', cseq));
  }
  if (call.audio) parts.push(`<nop><action><exec rtp_stream="${call.audio},-1,0"/></action></nop>`);
  const hangup = call.hangup ?? { by: 'phone', holdMs: 1000 };
  if (hangup.by === 'phone') {
    parts.push(`<pause milliseconds="${hangup.holdMs}"/>`, inDialog(call, 'BYE', cseq + 1, { retrans: true }), '<recv response="200"/>');
  } else {
    parts.push(`<recv request="BYE"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>`);
  }
  parts.push('</scenario>');
  return parts.join('\n');
}

export interface SippRun {
  /** Resolves with SIPp's exit code (0: the scenario ran as written) and its output. */
  done: Promise<{ code: number | null; output: string }>;
  /** Rejects when SIPp exits before `p` settles (it failed to start, or the scenario went wrong). */
  during<T>(p: Promise<T>): Promise<T>;
  /** The RTP port of the gateway's SDP answer, read from SIPp's message trace once the 200 came. */
  answerPort(): number | undefined;
  kill(): void;
}

/** Runs one call of `call` against the gateway's SIP port. */
export async function runSipp(sipPort: number, call: SippCall, timeoutS = 30): Promise<SippRun> {
  return spawnSipp(scenario(call), [`127.0.0.1:${sipPort}`, '-p', String(await freeUdpPort())], { echo: !!call.echo, timeoutS });
}

/** The phone the gateway dials (SIPp as UAS): what it answers to the gateway's INVITE. */
export interface SippPhone {
  /** 200 answers (after `ringMs` of 180), 486 is busy, 'ring' rings until the gateway CANCELs. */
  answer: 200 | 486 | 'ring';
  ringMs?: number;
  /** Challenge the first INVITE with 401 and check the second's digest against these. */
  auth?: { username: string; password: string };
  /** The RTP port the phone's SDP answer names (a socket of the test's own); SIPp's echo port if absent. */
  mediaPort?: number;
  /**
   * Once answered, wait for a REFER whose Refer-To matches `referTo` (a regular expression), accept
   * it and report the new call's outcome in NOTIFYs (100, then `status`); 200 is followed by the
   * gateway's BYE, a failure leaves the call up until the gateway hangs up.
   */
  transfer?: { referTo: string; status: 200 | 486 };
}

const UAS_SDP = (port: string) => `v=0
o=phone 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio ${port} RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
`;

/** A response to the last request SIPp received; the To gets the phone's tag. */
function reply(status: string, extra = '', body = ''): string {
  return `<send><![CDATA[
SIP/2.0 ${status}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:phone@[local_ip]:[local_port]>
${extra}${body ? 'Content-Type: application/sdp\n' : ''}Content-Length: [len]

${body}]]></send>`;
}

export function uasScenario(phone: SippPhone): string {
  const parts = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="roomgate dials a phone">'];
  if (phone.auth) {
    parts.push('<recv request="INVITE"/>', reply('401 Unauthorized', 'WWW-Authenticate: Digest realm="phone.test", nonce="4f1a9c", algorithm=MD5, qop="auth"\n'), '<recv request="ACK"/>');
    // A wrong digest gets 403 and the scenario fails (the test sees the refusal too).
    parts.push(`<recv request="INVITE"><action><verifyauth assign_to="authvalid" username="${phone.auth.username}" password="${phone.auth.password}"/></action></recv>`,
      '<nop hide="true" test="authvalid" next="authok"/>', reply('403 Forbidden'), '<recv request="ACK"/>', '<nop><action><exec int_cmd="stop_now"/></action></nop>', '<label id="authok"/>');
  } else {
    parts.push('<recv request="INVITE"/>');
  }
  parts.push(reply('100 Trying'));
  if (phone.answer === 486) {
    parts.push(reply('486 Busy Here'), '<recv request="ACK"/>', '</scenario>');
    return parts.join('\n');
  }
  parts.push(reply('180 Ringing'));
  if (phone.answer === 'ring') {
    // The gateway gives up: 200 to the CANCEL, 487 to the INVITE (CSeq 1: no challenge before it).
    parts.push('<recv request="CANCEL"/>', reply('200 OK'), `<send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: 1 INVITE
Content-Length: 0

]]></send>`, '<recv request="ACK"/>', '</scenario>');
    return parts.join('\n');
  }
  if (phone.ringMs) parts.push(`<pause milliseconds="${phone.ringMs}"/>`);
  parts.push(reply('200 OK', '', UAS_SDP(phone.mediaPort ? String(phone.mediaPort) : '[media_port]')).replace('<send>', '<send retrans="500">'), '<recv request="ACK"/>');
  if (phone.transfer) {
    // The NOTIFYs go the other way in the dialog: From is the phone's side, To the gateway's From.
    const notify = (cseq: number, state: string, frag: string) => `<send retrans="500"><![CDATA[
NOTIFY sip:roomgate@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:phone@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To:[$gateway]
Call-ID: [call_id]
CSeq: ${cseq} NOTIFY
Contact: <sip:phone@[local_ip]:[local_port]>
Event: refer
Subscription-State: ${state}
Max-Forwards: 70
Content-Type: message/sipfrag;version=2.0
Content-Length: [len]

${frag}
]]></send>
<recv response="200"/>`;
    const [code, reason] = phone.transfer.status === 200 ? [200, 'OK'] : [486, 'Busy Here'];
    parts.push(`<recv request="REFER"><action>
<ereg regexp=".*" search_in="hdr" header="From:" assign_to="gateway"/>
<ereg regexp="${phone.transfer.referTo}" search_in="hdr" header="Refer-To:" check_it="true" assign_to="target"/>
</action></recv>`, reply('202 Accepted', 'X-Refer-Seen:[$target]\n'), notify(1, 'active;expires=60', 'SIP/2.0 100 Trying'), notify(2, 'terminated;reason=noresource', `SIP/2.0 ${code} ${reason}`));
  }
  parts.push('<recv request="BYE"/>', reply('200 OK'), '</scenario>');
  return parts.join('\n');
}

/** SIPp as the phone the gateway calls: listening on loopback, one call, then it exits. */
export async function runSippPhone(phone: SippPhone, timeoutS = 30): Promise<SippRun & { port: number }> {
  const port = await freeUdpPort();
  const run = await spawnSipp(uasScenario(phone), ['-p', String(port)], { echo: !phone.mediaPort, timeoutS });
  return { ...run, port };
}

async function spawnSipp(text: string, target: string[], opts: { echo: boolean; timeoutS: number }): Promise<SippRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-sipp-'));
  const file = path.join(dir, 'call.xml');
  fs.writeFileSync(file, text);
  const args = [
    ...target, '-sf', file, '-m', '1', '-l', '1', '-i', '127.0.0.1',
    '-mp', String(await freeUdpPort()), '-timeout', `${Math.round(scaled(opts.timeoutS * 1000) / 1000)}s`, '-timeout_error', '-nostdin', '-trace_err', '-trace_msg',
    ...(opts.echo ? ['-rtp_echo'] : []),
  ];
  const child = spawn('sipp', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  child.stderr.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  const done = new Promise<{ code: number | null; output: string }>((resolve) => {
    child.once('exit', (code) => {
      let errors = '';
      for (const f of fs.readdirSync(dir)) if (f.endsWith('_errors.log')) errors += fs.readFileSync(path.join(dir, f), 'utf8');
      fs.rmSync(dir, { recursive: true, force: true });
      resolve({ code, output: `${errors}\n${output.slice(-3000)}` });
    });
  });
  const answerPort = () => {
    try {
      for (const f of fs.readdirSync(dir)) {
        if (!f.endsWith('_messages.log')) continue;
        const m = /message received[^\n]*\n+SIP\/2\.0 200 OK[\s\S]*?\nm=audio (\d+) /.exec(fs.readFileSync(path.join(dir, f), 'utf8'));
        if (m) return Number(m[1]);
      }
    } catch {
      // the call ended and its folder is gone
    }
    return undefined;
  };
  const during = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([p, done.then((r) => Promise.reject(new Error(`SIPp exited (${r.code}) while the test waited: ${r.output}`)))]);
  return { done, during, answerPort, kill: () => child.kill('SIGKILL') };
}

/**
 * Presses `digit` on the phone as RFC 4733 telephone-event packets (payload type 101, as the SIPp
 * scenario offers): three packets of one event, the last two with the end bit, as phones send them.
 */
export async function sendDtmf(port: number, digit: string, seq: number): Promise<void> {
  const code = '0123456789*#ABCD'.indexOf(digit);
  if (code < 0) throw new Error(`'${digit}' is not a DTMF key`);
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const ts = 0x1000 * (seq + 1);
  for (let i = 0; i < 3; i++) {
    const p = Buffer.alloc(16);
    p[0] = 0x80;
    p[1] = (i === 0 ? 0x80 : 0) | 101;
    p.writeUInt16BE(seq * 3 + i, 2);
    p.writeUInt32BE(ts, 4);
    p.writeUInt32BE(0x5eed, 8);
    p[12] = code;
    p[13] = (i > 0 ? 0x80 : 0) | 10; // end bit, volume -10 dBm0
    p.writeUInt16BE(800, 14); // 100 ms
    await new Promise<void>((resolve) => sock.send(p, port, '127.0.0.1', () => resolve()));
  }
  await new Promise<void>((resolve) => sock.close(() => resolve()));
}

/** `seconds` of a `hz` sine as raw 8 kHz μ-law (what a phone sends), cached in the temp folder. */
export async function muLawTone(hz: number, seconds: number): Promise<string> {
  const file = path.join(os.tmpdir(), `roomgate-tone-${hz}-${seconds}.ul`);
  if (fs.existsSync(file)) return file;
  const tmp = `${file}.${process.pid}.tmp`;
  const ff = launchFfmpeg(['-y', '-f', 'lavfi', '-i', `sine=frequency=${hz}:sample_rate=8000:duration=${seconds}`, '-c:a', 'pcm_mulaw', '-f', 'mulaw', tmp]);
  const code = await ff.exited;
  if (code !== 0) throw new Error(`ffmpeg could not write the tone: ${ff.stderrTail()}`);
  fs.renameSync(tmp, file);
  return file;
}

/** Relative power of `hz` in PCM samples (Goertzel), 0..1 of the signal's power. */
export function toneShare(samples: Int16Array, sampleRate: number, hz: number): number {
  const k = (2 * Math.cos((2 * Math.PI * hz) / sampleRate));
  let s1 = 0;
  let s2 = 0;
  let energy = 0;
  for (const x of samples) {
    const s0 = x + k * s1 - s2;
    s2 = s1;
    s1 = s0;
    energy += x * x;
  }
  const power = s1 * s1 + s2 * s2 - k * s1 * s2;
  return energy === 0 ? 0 : (2 * power) / (samples.length * energy);
}

/**
 * The share of `hz` in a second of the track's decoded audio, from its first frame with sound, or
 * `skipMs` after it (a path through a phone's echo starts with the mix's and the echo's start-up).
 */
export async function toneOf(track: RemoteTrack, hz: number, skipMs = 0): Promise<number> {
  const frames = new RtpAudioDecoder(track.track).frames();
  const giveUp = setTimeout(() => frames.end(), scaled(15_000));
  const pcm: number[] = [];
  let skip = Math.round((skipMs / 1000) * SAMPLE_RATE);
  let heard = false;
  try {
    for await (const f of frames) {
      if (!heard && f.samples.every((s) => Math.abs(s) < 500)) continue;
      heard = true;
      if (skip > 0) {
        skip -= f.samples.length;
        continue;
      }
      pcm.push(...f.samples);
      if (pcm.length >= SAMPLE_RATE) break;
    }
  } finally {
    clearTimeout(giveUp);
    await frames.return();
  }
  if (pcm.length < SAMPLE_RATE) throw new Error(`only ${pcm.length} samples of sound arrived from ${track.participantIdentity} in ${scaled(15_000)} ms`);
  // Averaged over 100 ms blocks: Goertzel sums coherently, so one phase jump in the second (a frame
  // the mix or the jitter handling dropped on a loaded machine) cancels part of the whole second's
  // tone; per block it costs only that block. (The echo path's second measured 0.65 and 0.72 in two
  // runs at a load average of 10, and 0.9998 in the next run; a phase jump is the likely cause, not
  // shown.) Silence or another tone still measures near 0 in every block.
  const samples = Int16Array.from(pcm);
  const block = SAMPLE_RATE / 10;
  let sum = 0;
  for (let i = 0; i < 10; i++) sum += toneShare(samples.subarray(i * block, (i + 1) * block), SAMPLE_RATE, hz);
  return sum / 10;
}
