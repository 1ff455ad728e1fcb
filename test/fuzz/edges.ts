// Seeded fuzzers for each network edge of the gateway: Twirp, the /rtc and /agent WebSockets,
// WHIP/WHEP, raw RTMP, and the internal egress API. `npm run fuzz` (scripts/fuzz.ts) runs 10 000+
// inputs per edge against a gateway process; test/integration/fuzz-edges.test.ts runs 1 000 per
// edge against an in-process one. Both use these generators, so a finding replays by seed.
//
// A finding is an answer of 5xx (or an `internal` error frame), a request that gets no answer
// within its deadline (hang), a gateway that is no longer alive or healthy (crash), or resident
// memory that grew by more than the bound over one edge (memory).
//
// Everything here talks to the target on 127.0.0.1 only, and nothing generated can make the
// gateway connect elsewhere: URL-ingress sources and egress tap targets are rewritten to loopback
// before sending (see `sanitize`), and the target runs without an egress worker or webhooks.
import dgram from 'node:dgram';
import net from 'node:net';
import WebSocket from 'ws';
import { mintToken } from '../../src/auth/tokens.ts';
import { deriveWorkerSecret } from '../../src/auth/workerCredential.ts';
import { chromeWhepOffer, chromeWhipOffer, mutate as mutateSdp } from '../fixtures/sdp.ts';

export interface FuzzTarget {
  /** http://127.0.0.1:<port> */
  url: string;
  rtmpPort: number;
  /** The SIP listener's UDP port; the SIP edge runs only when set. */
  sipPort?: number;
  apiKey: string;
  apiSecret: string;
  /** Memory of the gateway process, bytes: its RSS (the in-process lean test reads live memory after a full collection). */
  rss(): number;
  /** False once the gateway process is gone. */
  alive(): boolean;
}

export type FindingKind = '5xx' | 'internal' | 'hang' | 'crash' | 'memory';

export interface Finding {
  edge: string;
  kind: FindingKind;
  detail: string;
  /** The input (shortened) that caused it. */
  input: string;
}

export interface EdgeReport {
  edge: string;
  inputs: number;
  /** Answers by kind (HTTP status, error code, close code …). */
  outcomes: Record<string, number>;
  findings: Finding[];
  rssBeforeMb: number;
  rssAfterMb: number;
  seconds: number;
}

export interface FuzzOptions {
  seed: number;
  inputs: number;
  /** Per-request deadline: no answer by then is a hang. */
  deadlineMs?: number;
  /** Growth of the gateway's RSS over one edge that counts as a finding. */
  memoryBoundMb?: number;
  /** Requests in flight at once. */
  concurrency?: number;
}

// ---- randomness --------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

const NASTY_STRINGS = ['', ' ', 'x', '0', '-1', '%E0%A4%A', '%00', '../../etc/passwd', '\u0000', '\ud800', 'é'.repeat(40), '__proto__', 'constructor', 'a'.repeat(300), '{}', '[]', 'null', '\r\n', 'rtmp://127.0.0.1/x', 'http://127.0.0.1:9/'];
const NASTY_NUMBERS = [0, -1, 1, 1.5, 2 ** 31, 2 ** 32, 4294967295, 2 ** 53, -(2 ** 63), 1e308];

export function junk(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 3 ? 4 : 7)) {
    case 0:
      return r.pick([null, true, false]);
    case 1:
      return r.pick(NASTY_NUMBERS);
    case 2:
      return r.pick(NASTY_STRINGS);
    case 3:
      return 'y'.repeat(r.int(3000));
    case 4:
      return Array.from({ length: r.int(4) }, () => junk(r, depth + 1));
    case 5:
      return Object.fromEntries(Array.from({ length: r.int(4) }, () => [r.pick(['a', 'name', 'room', 'identity', 'type', 'id', '__proto__', 'x'.repeat(r.int(50))]), junk(r, depth + 1)]));
    default:
      return r.int(1000);
  }
}

/** A structural mutation of a JSON value: fields replaced, dropped, added, types changed. */
export function mutateValue(v: unknown, r: Rng, depth = 0): unknown {
  if (r.chance(depth === 0 ? 0.05 : 0.2)) return junk(r, depth);
  if (Array.isArray(v)) {
    const out = v.map((x) => mutateValue(x, r, depth + 1));
    if (r.chance(0.2)) out.push(junk(r, depth + 1));
    if (r.chance(0.1)) out.splice(0, r.int(out.length + 1));
    return out;
  }
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (r.chance(0.1)) continue;
      out[k] = r.chance(0.5) ? mutateValue(x, r, depth + 1) : x;
    }
    if (r.chance(0.2)) out[r.pick(['extra', 'name', 'room', 'ttl', '__proto__', 'x'.repeat(r.int(20))])] = junk(r, depth + 1);
    return out;
  }
  return r.chance(0.5) ? junk(r, depth) : v;
}

/** A byte-level mutation of text: characters flipped, cut, duplicated, junk inserted. */
export function mutateText(s: string, r: Rng): string {
  let out = s;
  for (let k = 1 + r.int(3); k > 0; k--) {
    const at = r.int(out.length + 1);
    switch (r.int(5)) {
      case 0:
        out = out.slice(0, at) + String.fromCharCode(r.int(256)) + out.slice(at + 1);
        break;
      case 1:
        out = out.slice(0, at);
        break;
      case 2:
        out = out.slice(0, at) + out.slice(at, at + r.int(40)).repeat(1 + r.int(4)) + out.slice(at);
        break;
      case 3:
        out = out.slice(0, at) + r.pick(['"', '{', '}', '[', ']', ',', ':', '\\', '\\u', 'null', '1e999', '-']) + out.slice(at);
        break;
      default:
        out = out.slice(0, at) + JSON.stringify(junk(r)) + out.slice(at);
    }
  }
  return out;
}

/** A body derived from `seed`: mostly structural mutations, some text mutations, some noise. */
export function jsonBody(seed: unknown, r: Rng): string | Buffer {
  const roll = r.int(20);
  if (roll < 12) return JSON.stringify(mutateValue(seed, r));
  if (roll < 17) return mutateText(JSON.stringify(seed), r);
  if (roll < 19) return r.bytes(r.int(300));
  const depth = 1 + r.int(20_000);
  return `{"a":${'['.repeat(depth)}${']'.repeat(depth)}}`;
}

// ---- plumbing ----------------------------------------------------------------------------

const DEFAULTS = { deadlineMs: 5000, memoryBoundMb: 384, concurrency: 8 };

const short = (x: string | Buffer) => {
  const s = typeof x === 'string' ? x : `<${x.length} bytes> ${x.subarray(0, 60).toString('hex')}`;
  return s.length > 300 ? `${s.slice(0, 300)}…(${s.length})` : s;
};

class Recorder {
  readonly outcomes: Record<string, number> = {};
  /** Inputs answered so far (for the midpoint memory reading). */
  done = 0;
  readonly findings: Finding[] = [];
  constructor(readonly edge: string) {}
  count(outcome: string): void {
    this.done++;
    this.outcomes[outcome] = (this.outcomes[outcome] ?? 0) + 1;
  }
  find(kind: FindingKind, detail: string, input: string | Buffer): void {
    // The first few of a kind are enough to replay; the count stays in the outcomes.
    this.count(`finding:${kind}`);
    if (this.findings.filter((f) => f.kind === kind).length < 10) this.findings.push({ edge: this.edge, kind, detail, input: short(input) });
  }
}

async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function healthy(t: FuzzTarget, deadlineMs: number): Promise<string | undefined> {
  if (!t.alive()) return 'the gateway process is gone';
  try {
    const res = await fetch(`${t.url}/healthz`, { signal: AbortSignal.timeout(deadlineMs) });
    if (res.status !== 200) return `/healthz answered ${res.status}: ${(await res.text()).slice(0, 200)}`;
  } catch (err) {
    return `/healthz did not answer: ${(err as Error).message}`;
  }
  return undefined;
}

/** Runs one edge: inputs, then liveness and memory checks. */
async function edge(name: string, t: FuzzTarget, o: FuzzOptions, body: (rec: Recorder, opts: Required<FuzzOptions>) => Promise<void>): Promise<EdgeReport> {
  const opts: Required<FuzzOptions> = { ...DEFAULTS, ...o };
  const rec = new Recorder(name);
  const started = Date.now();
  const before = t.rss();
  // RSS at the midpoint too: a burst of large buffers raises it once (the allocator keeps the
  // pages), a leak keeps raising it; the second half's growth is what tells them apart.
  let middle = 0;
  const half = setInterval(() => {
    if (rec.done >= opts.inputs / 2 && !middle) middle = t.rss();
  }, 100);
  await body(rec, opts);
  clearInterval(half);
  const sick = await healthy(t, opts.deadlineMs);
  if (sick) rec.find('crash', sick, '(after all inputs)');
  // Let the gateway release what the burst held (sockets, buffers) before measuring.
  await new Promise((r) => setTimeout(r, 1000));
  const after = t.rss();
  const growthMb = (after - before) / 2 ** 20;
  const lateMb = (after - (middle || before)) / 2 ** 20;
  if (growthMb > opts.memoryBoundMb) rec.find('memory', `RSS grew ${growthMb.toFixed(0)} MB over the edge (bound ${opts.memoryBoundMb} MB)`, '(whole edge)');
  else if (lateMb > opts.memoryBoundMb / 4) rec.find('memory', `RSS still grew ${lateMb.toFixed(0)} MB in the second half of the inputs (bound ${opts.memoryBoundMb / 4} MB)`, '(second half)');
  return {
    edge: name,
    inputs: opts.inputs,
    outcomes: rec.outcomes,
    findings: rec.findings,
    rssBeforeMb: Math.round(before / 2 ** 20),
    rssAfterMb: Math.round(after / 2 ** 20),
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

/** One HTTP request with the deadline; records the status, 5xx and hangs. */
async function http(rec: Recorder, deadlineMs: number, url: string, init: RequestInit, input: string | Buffer): Promise<number | undefined> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(deadlineMs) });
    const text = Buffer.from(await res.arrayBuffer()).toString('utf8', 0, 2000);
    // A Twirp `unavailable` (503) is a transient answer by design (a room between its store record
    // and its media, Redis away), counted apart; any other 5xx is a finding.
    const transient = res.status === 503 && /"code":"unavailable"/.test(text);
    rec.count(transient ? '503-unavailable' : String(res.status));
    if (res.status >= 500 && !transient) rec.find('5xx', `${init.method ?? 'GET'} ${new URL(url).pathname} answered ${res.status}: ${text.slice(0, 200)}`, input);
    return res.status;
  } catch (err) {
    const e = err as Error;
    if (e.name === 'TimeoutError') rec.find('hang', `${init.method ?? 'GET'} ${new URL(url).pathname}: no answer in ${deadlineMs} ms`, input);
    else rec.count(`error:${e.message.slice(0, 40)}`); // a connection the server closed on purpose (oversized, malformed)
    return undefined;
  }
}

const ROOMS = ['fz-a', 'fz-b', 'fz-c'];

const asBody = (b: string | Buffer): BodyInit => (typeof b === 'string' ? b : new Uint8Array(b));

/** A token with every service grant, for the rooms the fuzzers use. */
function adminToken(t: FuzzTarget, room = ROOMS[0]!): Promise<string> {
  return mintToken(t.apiKey, t.apiSecret, {
    identity: 'fuzz-admin',
    video: { roomCreate: true, roomList: true, roomAdmin: true, roomRecord: true, ingressAdmin: true, room },
    sip: { admin: true, call: true },
    ttl: 3600,
  });
}

/**
 * The credential the egress worker presents on the internal egress API. Today a `roomRecord`
 * token; the one place to change when workers get their own credential.
 */
export function internalApiAuth(t: FuzzTarget): Promise<string> {
  // The workers' credential as the gateway derives it when egress.worker_secret is unset.
  return Promise.resolve(deriveWorkerSecret(t.apiSecret));
}

/**
 * Keeps generated requests from pointing the gateway anywhere but loopback: URL-ingress sources
 * and egress tap targets are rewritten. Unparsable JSON is left as it is (the gateway's parser,
 * the same JSON.parse, refuses it too).
 */
function sanitize(body: string | Buffer, fix: (o: Record<string, unknown>) => void): string | Buffer {
  if (typeof body !== 'string') return body;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return body;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return body;
  fix(parsed as Record<string, unknown>);
  try {
    return JSON.stringify(parsed);
  } catch {
    // Too deep to write back (the nesting bodies): sent as they are only if they name no target.
    return /url|ip|host/i.test(body) ? '{}' : body;
  }
}

// ---- Twirp --------------------------------------------------------------------------------

const TWIRP: [string, string, unknown][] = [
  ['livekit.RoomService', 'CreateRoom', { name: 'fz-a', emptyTimeout: 10, departureTimeout: 5, maxParticipants: 5, metadata: 'm' }],
  ['livekit.RoomService', 'ListRooms', { names: ['fz-a', 'fz-b'] }],
  ['livekit.RoomService', 'DeleteRoom', { room: 'fz-c' }],
  ['livekit.RoomService', 'ListParticipants', { room: 'fz-a' }],
  ['livekit.RoomService', 'GetParticipant', { room: 'fz-a', identity: 'p' }],
  ['livekit.RoomService', 'RemoveParticipant', { room: 'fz-a', identity: 'p' }],
  ['livekit.RoomService', 'MutePublishedTrack', { room: 'fz-a', identity: 'p', trackSid: 'TR_x', muted: true }],
  ['livekit.RoomService', 'UpdateParticipant', { room: 'fz-a', identity: 'p', metadata: 'x', permission: { canPublish: true }, attributes: { a: 'b' } }],
  ['livekit.RoomService', 'UpdateSubscriptions', { room: 'fz-a', identity: 'p', trackSids: ['TR_x'], subscribe: true }],
  ['livekit.RoomService', 'SendData', { room: 'fz-a', data: 'aGk=', kind: 0, destinationIdentities: ['p'], topic: 't' }],
  ['livekit.RoomService', 'UpdateRoomMetadata', { room: 'fz-a', metadata: 'x' }],
  ['livekit.Egress', 'StartRoomCompositeEgress', { roomName: 'fz-a', layout: 'grid', file: { filepath: 'fz/{room_name}.mp4' } }],
  ['livekit.Egress', 'StartTrackEgress', { roomName: 'fz-a', trackId: 'TR_x', file: { filepath: 'fz/x' } }],
  ['livekit.Egress', 'StartParticipantEgress', { roomName: 'fz-a', identity: 'p', fileOutputs: [{ filepath: 'fz/p.mp4' }] }],
  ['livekit.Egress', 'ListEgress', { roomName: 'fz-a' }],
  ['livekit.Egress', 'StopEgress', { egressId: 'EG_x' }],
  ['livekit.Egress', 'UpdateLayout', { egressId: 'EG_x', layout: 'speaker' }],
  ['livekit.Egress', 'UpdateStream', { egressId: 'EG_x', addOutputUrls: ['rtmp://127.0.0.1/live/x'] }],
  ['livekit.Ingress', 'CreateIngress', { inputType: 0, name: 'n', roomName: 'fz-a', participantIdentity: 'ing' }],
  ['livekit.Ingress', 'ListIngress', { roomName: 'fz-a' }],
  ['livekit.Ingress', 'UpdateIngress', { ingressId: 'IN_x', name: 'y' }],
  ['livekit.Ingress', 'DeleteIngress', { ingressId: 'IN_x' }],
  ['livekit.AgentDispatchService', 'CreateDispatch', { room: 'fz-a', agentName: 'a', metadata: 'm' }],
  ['livekit.AgentDispatchService', 'ListDispatch', { room: 'fz-a' }],
  ['livekit.AgentDispatchService', 'DeleteDispatch', { room: 'fz-a', dispatchId: 'AD_x' }],
  ['livekit.SIP', 'CreateSIPInboundTrunk', { trunk: { name: 't', numbers: ['+15550100'], allowedAddresses: ['127.0.0.1'], authUsername: 'u', authPassword: 'p' } }],
  ['livekit.SIP', 'CreateSIPOutboundTrunk', { trunk: { name: 'o', address: '127.0.0.1:5060', numbers: ['+15550100'] } }],
  ['livekit.SIP', 'ListSIPInboundTrunk', { trunkIds: ['ST_x'] }],
  ['livekit.SIP', 'DeleteSIPTrunk', { sipTrunkId: 'ST_x' }],
  ['livekit.SIP', 'CreateSIPDispatchRule', { rule: { dispatchRuleIndividual: { roomPrefix: 'fz' } }, name: 'r' }],
  ['livekit.SIP', 'ListSIPDispatchRule', {}],
  ['livekit.SIP', 'DeleteSIPDispatchRule', { sipDispatchRuleId: 'SDR_x' }],
  // CreateSIPParticipant is left out: it answers 501 unimplemented by design (no dialling out yet).
];

/** Room and ingress names from a small pool, so valid mutations do not create thousands of each. */
function boundNames(o: Record<string, unknown>, r: Rng): void {
  for (const k of ['name', 'room', 'roomName']) if (typeof o[k] === 'string' && (o[k] as string).length > 0) o[k] = r.pick(ROOMS);
}

export function fuzzTwirp(t: FuzzTarget, o: FuzzOptions): Promise<EdgeReport> {
  return edge('twirp', t, o, async (rec, opts) => {
    const r = new Rng(opts.seed);
    const token = await adminToken(t);
    await pool(opts.inputs, opts.concurrency, async () => {
      const [service, rpc, seed] = r.pick(TWIRP);
      const ingress = rpc === 'CreateIngress';
      const proto = !ingress && r.chance(0.1);
      let body: string | Buffer = proto ? r.bytes(r.int(200)) : jsonBody(seed, r);
      body = sanitize(body, (obj) => {
        boundNames(obj, r);
        // A URL ingress fetches its source: only ever a loopback one nothing listens on.
        if (ingress) obj.url = 'http://127.0.0.1:9/fuzz.mp4';
      });
      if (ingress && typeof body !== 'string') body = JSON.stringify(seed); // no random protobuf CreateIngress
      const headers: Record<string, string> = { 'Content-Type': proto ? 'application/protobuf' : r.chance(0.05) ? r.pick(['text/plain', '', 'application/json; charset=x']) : 'application/json' };
      const auth = r.int(20);
      if (auth > 1) headers.Authorization = `Bearer ${token}`;
      else if (auth === 1) headers.Authorization = r.pick(['Bearer ', 'Bearer a.b.c', `Bearer ${token.slice(0, -4)}AAAA`, 'Basic eDp5']);
      const path = r.chance(0.03) ? `/twirp/${service}/${mutateText(rpc, r)}` : `/twirp/${service}/${rpc}`;
      const method = r.chance(0.02) ? 'GET' : 'POST';
      await http(rec, opts.deadlineMs, `${t.url}${path}`, { method, headers, ...(method === 'GET' || r.chance(0.02) ? {} : { body: asBody(body) }) }, `${path} ${short(body)}`);
    });
  });
}

// ---- WebSockets (/rtc and /agent) -------------------------------------------------------------

interface Frame {
  id?: unknown;
  ok?: boolean;
  type?: string;
  /** /rtc errors: {ok:false, error:{code,message}}; /agent errors: {type:'error', code, message}. */
  error?: { code?: string; message?: string };
  code?: string;
  message?: string;
}

/**
 * Sends `frames` on one connection and waits for an answer to each that the protocol answers:
 * every frame on /rtc; on /agent, errors come back and valid messages may be silent, so the
 * connection is probed with a final frame that is always answered.
 */
async function wsSession(
  rec: Recorder,
  url: string,
  frames: (string | Buffer)[],
  o: { deadlineMs: number; ready?: (m: Frame) => boolean; probe: string; isProbeAnswer: (m: Frame) => boolean; perFrameAnswers: boolean },
): Promise<void> {
  const ws = new WebSocket(url, { handshakeTimeout: o.deadlineMs });
  const inbox: Frame[] = [];
  let closed: number | undefined;
  let open = false;
  ws.on('open', () => {
    open = true;
    wake?.();
  });
  let wake: (() => void) | undefined;
  ws.on('message', (d, binary) => {
    if (binary) return rec.count('binary-answer');
    try {
      inbox.push(JSON.parse(d.toString()) as Frame);
    } catch {
      rec.count('unparsable-answer');
    }
    wake?.();
  });
  ws.on('close', (code) => {
    closed = code;
    wake?.();
  });
  ws.on('error', () => undefined);
  const until = async (pred: () => boolean, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline || closed !== undefined) return pred();
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
    return true;
  };
  try {
    const ready = o.ready;
    if (!(await until(() => (ready ? inbox.some(ready) : open), o.deadlineMs))) {
      if (closed !== undefined) rec.count(`close:${closed}`);
      else rec.find('hang', 'no welcome within the deadline', url.replace(/access_token=[^&]+/, 'access_token=…'));
      return;
    }
    inbox.length = 0;
    for (const f of frames) {
      if (closed !== undefined) break;
      ws.send(f);
    }
    if (closed === undefined) ws.send(o.probe);
    const answered = await until(() => inbox.some(o.isProbeAnswer), o.deadlineMs + frames.length * 5);
    for (const m of inbox) {
      if (m.ok === false || m.type === 'error') {
        const code = m.error?.code ?? m.code ?? '?';
        rec.count(`error:${code}`);
        if (code === 'internal') rec.find('internal', m.error?.message ?? m.message ?? '', frames.map(short).join(' | ').slice(0, 600));
      } else rec.count('answered');
    }
    if (closed !== undefined) rec.count(`close:${closed}`);
    else if (!answered) rec.find('hang', `no answer to the probe after ${frames.length} frames`, frames.map(short).join(' | ').slice(0, 600));
    else if (o.perFrameAnswers) {
      const answers = inbox.filter((m) => m.ok !== undefined).length;
      if (answers < frames.length) rec.find('hang', `${frames.length - answers + 1} of ${frames.length + 1} frames unanswered`, frames.map(short).join(' | ').slice(0, 600));
    }
  } finally {
    ws.terminate();
  }
}

const RTC_METHODS: [string, unknown][] = [
  ['ping', {}],
  ['ready', {}],
  ['createTransport', { direction: 'send' }],
  ['connectTransport', { transportId: 'x', dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AB:CD' }] } }],
  ['publishTrack', { transportId: 'x', kind: 'audio', source: 'microphone', rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 1 }] } }],
  ['muteTrack', { trackSid: 'TR_x', muted: true }],
  ['subscribe', { trackSids: ['TR_x'], subscribe: true }],
  ['resumeConsumer', { consumerId: 'c' }],
  ['setPreferredLayers', { consumerId: 'c', spatialLayer: 1 }],
  ['publishData', { data: 'aGk=', reliable: true, topic: 't' }],
  ['updateMetadata', { metadata: 'm', name: 'n', attributes: { a: 'b' } }],
];

export function fuzzRtc(t: FuzzTarget, o: FuzzOptions): Promise<EdgeReport> {
  return edge('rtc', t, o, async (rec, opts) => {
    const r = new Rng(opts.seed);
    const perSession = 100;
    const sessions = Math.ceil(opts.inputs / perSession);
    await pool(sessions, Math.min(4, opts.concurrency), async (s) => {
      const count = Math.min(perSession, opts.inputs - s * perSession);
      const frames = Array.from({ length: count }, (_, i) => {
        const [method, seed] = r.pick(RTC_METHODS);
        const id = 1000 + i;
        const roll = r.int(10);
        if (roll === 0) return r.bytes(1 + r.int(64));
        if (roll === 1) return mutateText(JSON.stringify({ id, method, data: seed }), r);
        return JSON.stringify({ id, method: r.chance(0.05) ? mutateText(method, r) : method, data: mutateValue(seed, r) });
      });
      const room = r.pick(ROOMS);
      const token = await mintToken(t.apiKey, t.apiSecret, { identity: `fz-${s % 8}`, video: { roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true }, ttl: 600 });
      // Some sessions connect with a broken token instead: refused with a close code, never a crash.
      const badToken = r.chance(0.05) ? mutateText(token, r) : undefined;
      await wsSession(rec, `${t.url.replace(/^http/, 'ws')}/rtc?access_token=${encodeURIComponent(badToken ?? token)}`, frames, {
        deadlineMs: opts.deadlineMs,
        ready: (m) => (m as { event?: string }).event === 'joined',
        probe: '{"id":99999,"method":"ping","data":{}}',
        isProbeAnswer: (m) => m.id === 99999,
        perFrameAnswers: true,
      });
    });
  });
}

const AGENT_MESSAGES: unknown[] = [
  { type: 'register', agentName: 'fz-agent', capacity: 2, automatic: false, version: '1' },
  { type: 'load', load: 0.5 },
  { type: 'accept', jobId: 'AJ_x' },
  { type: 'reject', jobId: 'AJ_x', reason: 'busy' },
  { type: 'update', jobId: 'AJ_x', status: 'running' },
];

export function fuzzAgent(t: FuzzTarget, o: FuzzOptions): Promise<EdgeReport> {
  return edge('agent', t, o, async (rec, opts) => {
    const r = new Rng(opts.seed);
    const perSession = 100;
    const sessions = Math.ceil(opts.inputs / perSession);
    const token = await mintToken(t.apiKey, t.apiSecret, { identity: 'fz-agent', video: { agent: true }, ttl: 3600 });
    await pool(sessions, Math.min(4, opts.concurrency), async (s) => {
      const count = Math.min(perSession, opts.inputs - s * perSession);
      const frames = Array.from({ length: count }, () => {
        const seed = r.pick(AGENT_MESSAGES);
        const roll = r.int(10);
        if (roll === 0) return r.bytes(1 + r.int(64));
        if (roll === 1) return mutateText(JSON.stringify(seed), r);
        return JSON.stringify(mutateValue(seed, r));
      });
      // Valid messages may get no answer; an unknown type always gets an error: that is the probe.
      await wsSession(rec, `${t.url.replace(/^http/, 'ws')}/agent?access_token=${encodeURIComponent(token)}`, frames, {
        deadlineMs: opts.deadlineMs,
        probe: '{"type":"fuzz-probe"}',
        isProbeAnswer: (m) => m.type === 'error' && (m.message ?? '').includes("'fuzz-probe'"),
        perFrameAnswers: false,
      }).catch((err: Error) => rec.count(`error:${err.message.slice(0, 40)}`));
    });
  });
}

// ---- WHIP / WHEP --------------------------------------------------------------------------

export function fuzzWhipWhep(t: FuzzTarget, o: FuzzOptions, whipKey: string): Promise<EdgeReport> {
  return edge('whip-whep', t, o, async (rec, opts) => {
    const r = new Rng(opts.seed);
    const whip = chromeWhipOffer();
    const whep = chromeWhepOffer();
    const viewer = await mintToken(t.apiKey, t.apiSecret, { identity: 'fz-viewer', video: { roomJoin: true, room: ROOMS[0]!, canSubscribe: true }, ttl: 3600 });
    await pool(opts.inputs, opts.concurrency, async (i) => {
      const isWhip = r.chance(0.6);
      const sdp = r.chance(0.9) ? mutateSdp(isWhip ? whip : whep, opts.seed * 100_003 + i) : mutateText(isWhip ? whip : whep, r);
      const path = isWhip ? r.pick(['/w', '/w', '/w/', `/w/${mutateText('x', r)}`]) : r.pick([`/whep/${ROOMS[0]}/p`, `/whep/${ROOMS[0]}`, `/whep/${encodeURIComponent(mutateText('x', r))}/p/TR_x`, '/whep/session/x']);
      const auth = r.int(10) > 0 ? `Bearer ${isWhip ? whipKey : viewer}` : r.pick(['Bearer', 'Bearer x', '', `Bearer ${'k'.repeat(5000)}`]);
      const method = r.chance(0.9) ? 'POST' : r.pick(['GET', 'PATCH', 'DELETE', 'OPTIONS', 'PUT']);
      const headers: Record<string, string> = { 'Content-Type': r.chance(0.95) ? 'application/sdp' : r.pick(['text/plain', 'application/trickle-ice-sdpfrag', '']) };
      if (auth) headers.Authorization = auth;
      const res = await fetch(`${t.url}${path}`, { method, headers, ...(method === 'GET' || method === 'OPTIONS' ? {} : { body: sdp }), signal: AbortSignal.timeout(opts.deadlineMs) }).catch((err: Error) => err);
      if (res instanceof Error) {
        if (res.name === 'TimeoutError') rec.find('hang', `${method} ${path}: no answer in ${opts.deadlineMs} ms`, sdp);
        else rec.count(`error:${res.message.slice(0, 40)}`);
        return;
      }
      await res.arrayBuffer();
      rec.count(String(res.status));
      // 503 with Retry-After is the documented capacity answer, not a fault.
      if (res.status >= 500 && !(res.status === 503 && res.headers.get('retry-after'))) rec.find('5xx', `${method} ${path} answered ${res.status}`, sdp);
      // A session that did start is ended at once, so the fuzzer never holds the capacity.
      const location = res.headers.get('location');
      if (res.status === 201 && location) await http(rec, opts.deadlineMs, new URL(location, t.url).toString(), { method: 'DELETE', headers: auth ? { Authorization: auth } : {} }, 'DELETE created session');
    });
  });
}

// ---- RTMP ------------------------------------------------------------------------------------

function amfString(v: string): Buffer {
  const b = Buffer.from(v);
  return Buffer.concat([Buffer.from([0x02, b.length >> 8, b.length & 0xff]), b]);
}

function amfNumber(n: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 0;
  b.writeDoubleBE(n, 1);
  return b;
}

function chunk(cid: number, type: number, body: Buffer, stream = 0): Buffer {
  const h = Buffer.alloc(12);
  h[0] = cid & 0x3f;
  h.writeUIntBE(body.length & 0xffffff, 4, 3);
  h[7] = type;
  h.writeUInt32LE(stream, 8);
  return Buffer.concat([h, body]);
}

/** A plausible publisher session after the handshake: connect, createStream, publish, media. */
function rtmpSession(key: string): Buffer[] {
  const obj = Buffer.concat([Buffer.from([0x03]), Buffer.from([0, 3]), Buffer.from('app'), amfString('live'), Buffer.from([0, 5]), Buffer.from('tcUrl'), amfString('rtmp://127.0.0.1/live'), Buffer.from([0, 0, 9])]);
  return [
    chunk(3, 0x14, Buffer.concat([amfString('connect'), amfNumber(1), obj])),
    chunk(2, 0x01, Buffer.from([0, 0, 0x10, 0])), // set chunk size 4096
    chunk(3, 0x14, Buffer.concat([amfString('createStream'), amfNumber(2), Buffer.from([0x05])])),
    chunk(8, 0x14, Buffer.concat([amfString('publish'), amfNumber(3), Buffer.from([0x05]), amfString(key), amfString('live')]), 1),
    chunk(4, 0x09, Buffer.from([0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 0]), 1),
  ];
}

/**
 * One RTMP input: a connection whose handshake or chunk stream is mutated. Resolves when the
 * server has closed it or answered and gone quiet; the server holding a connection it may
 * legitimately wait on is not a hang, but not closing one after our FIN is.
 */
export function rtmpInput(t: FuzzTarget, r: Rng, deadlineMs: number): Promise<{ outcome: string; input: Buffer }> {
  const c0c1 = Buffer.concat([Buffer.from([3]), Buffer.alloc(1536)]);
  const mode = r.int(6);
  let pre: Buffer;
  let post: Buffer[] = [];
  if (mode === 0) pre = r.bytes(r.int(4000)); // noise instead of a handshake
  else if (mode === 1) pre = Buffer.from(mutateText(c0c1.toString('latin1'), r), 'latin1'); // a broken handshake
  else {
    pre = c0c1;
    const session = rtmpSession(r.chance(0.5) ? 'unknown-key' : mutateText('k'.repeat(32), r));
    post = session.map((b) => (r.chance(0.4) ? Buffer.from(mutateText(b.toString('latin1'), r), 'latin1') : b));
    if (mode === 5) post.push(chunk(4 + r.int(50), r.pick([0x08, 0x09, 0x12, 0x14, 0x01, 0x03, 0x04, 0x05, 0x06]), r.bytes(r.int(600))));
    if (r.chance(0.1)) post.push(Buffer.from([0x04 | (r.int(4) << 6), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x09])); // huge declared size
  }
  const input = Buffer.concat([pre, ...post]);
  return new Promise((resolve) => {
    const sock = net.connect(t.rtmpPort, '127.0.0.1');
    sock.setNoDelay(true);
    let got = 0;
    let sentPost = false;
    const done = (outcome: string) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ outcome, input });
    };
    const timer = setTimeout(() => done('hang'), deadlineMs);
    sock.on('error', () => undefined);
    sock.on('close', () => done(got > 0 ? 'answered-closed' : 'closed'));
    sock.on('data', (d) => {
      got += d.length;
      if (!sentPost && got >= 1 + 1536 * 2) {
        sentPost = true;
        sock.end(Buffer.concat([Buffer.alloc(1536), ...post])); // C2 and the session in one write
      }
    });
    sock.write(pre);
    if (post.length === 0) sock.end();
  });
}

export function fuzzRtmp(t: FuzzTarget, o: FuzzOptions): Promise<EdgeReport> {
  return edge('rtmp', t, o, async (rec, opts) => {
    const r = new Rng(opts.seed);
    await pool(opts.inputs, opts.concurrency, async () => {
      const { outcome, input } = await rtmpInput(t, r, opts.deadlineMs);
      if (outcome === 'hang') rec.find('hang', `connection still open ${opts.deadlineMs} ms after our FIN`, input);
      else rec.count(outcome);
    });
    // Still a working RTMP server: a clean handshake is answered with S0+S1+S2.
    const answered = await new Promise<number>((resolve) => {
      const sock = net.connect(t.rtmpPort, '127.0.0.1');
      let got = 0;
      const timer = setTimeout(() => finish(), opts.deadlineMs);
      const finish = () => {
        clearTimeout(timer);
        sock.destroy();
        resolve(got);
      };
      sock.on('error', finish);
      sock.on('data', (d) => {
        got += d.length;
        if (got >= 1 + 1536 * 2) finish();
      });
      sock.write(Buffer.concat([Buffer.from([3]), Buffer.alloc(1536)]));
    });
    if (answered < 1 + 1536 * 2) rec.find('crash', `a clean RTMP handshake got ${answered} bytes back after the fuzz`, '(liveness check)');
  });
}

// ---- internal egress API ----------------------------------------------------------------------

export function fuzzInternal(t: FuzzTarget, o: FuzzOptions): Promise<EdgeReport> {
  return edge('internal-egress', t, o, async (rec, opts) => {
    const r = new Rng(opts.seed);
    const auth = await internalApiAuth(t);
    const open = { egressId: 'EG_fuzz', room: ROOMS[0], source: { kind: 'track', trackSid: 'TR_x' } };
    const connect = { targets: [{ trackSid: 'TR_x', ip: '127.0.0.1', port: 9, rtcpPort: 10 }] };
    await pool(opts.inputs, opts.concurrency, async () => {
      const id = r.chance(0.8) ? 'ES_x' : mutateText('ES_x', r);
      const [method, path, seed] = r.pick<[string, string, unknown]>([
        ['POST', '/open', open],
        ['POST', `/room/${r.chance(0.7) ? ROOMS[0] : r.pick(['%E0%A4%A', '%', '%%', '%ZZ', encodeURIComponent(mutateText('room', r)), '..'])}`, { roomId: 'RM_x' }],
        ['POST', `/${id}/connect`, connect],
        ['POST', `/${id}/keepalive`, {}],
        ['POST', `/${id}/keyframe`, {}],
        ['DELETE', `/${id}`, {}],
        [r.pick(['GET', 'PUT', 'PATCH']), `/${mutateText('open', r)}`, {}],
      ]);
      const body = sanitize(jsonBody(seed, r), (obj) => {
        // Tap targets are where the gateway sends RTP: only ever loopback.
        if (Array.isArray(obj.targets)) for (const x of obj.targets) if (x && typeof x === 'object') (x as Record<string, unknown>).ip = '127.0.0.1';
        boundNames(obj, r);
      });
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (r.int(20) > 0) headers.Authorization = `Bearer ${auth}`;
      const safePath = /[^\x21-\x7e]/.test(path) ? encodeURI(path) : path;
      await http(rec, opts.deadlineMs, `${t.url}/internal/egress${safePath}`, { method, headers, ...(method === 'GET' ? {} : { body: asBody(body) }) }, `${method} ${safePath} ${short(body)}`);
    });
  });
}

// ---- SIP (UDP) ---------------------------------------------------------------------------------

function sipSeeds(port: number): string[] {
  const sdp = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=audio 9 RTP/AVP 0 8 101', 'a=rtpmap:101 telephone-event/8000', ''].join('\r\n');
  const request = (method: string, extra: string[] = [], body = '') =>
    [`${method} sip:+15559999@127.0.0.1:${port} SIP/2.0`, 'Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfz', 'From: "F" <sip:+15550001@127.0.0.1>;tag=fz', 'To: <sip:+15559999@127.0.0.1>',
      'Call-ID: fz@127.0.0.1', `CSeq: 1 ${method}`, 'Max-Forwards: 70', ...extra, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
  return [
    request('INVITE', ['Contact: <sip:f@127.0.0.1:9>', 'Content-Type: application/sdp', 'Authorization: Digest username="u", realm="roomgate", nonce="1.x", uri="sip:x", response="0"'], sdp),
    request('OPTIONS'),
    request('BYE'),
    request('CANCEL'),
    request('ACK'),
    request('REGISTER'),
    'SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfz\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n',
  ];
}

/**
 * Mutated SIP datagrams at the SIP listener (run before the Twirp edge, so no trunk exists and no
 * input places a real call): any 5xx but 503 is a finding, and afterwards OPTIONS must still get 200.
 */
export function fuzzSip(t: FuzzTarget, o: FuzzOptions): Promise<EdgeReport> {
  return edge('sip', t, o, async (rec, opts) => {
    const port = t.sipPort!;
    const r = new Rng(opts.seed);
    const seeds = sipSeeds(port);
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    const sent = new Map<string, string>();
    let options200 = false;
    sock.on('message', (m) => {
      const text = m.toString('latin1');
      const status = /^SIP\/2\.0 (\d{3})/.exec(text)?.[1];
      if (/Call-ID: liveness\r\n/.test(text) && status === '200') options200 = true;
      const input = sent.get(/^Call-ID: (.*)$/m.exec(text)?.[1]?.trim() ?? '') ?? '(unknown input)';
      if (status && status.startsWith('5') && status !== '503') rec.find('5xx', `the SIP listener answered ${status}`, input);
      else rec.count(status ? `answered ${status}` : 'answered (not a status line)');
    });
    try {
      for (let i = 0; i < opts.inputs; i++) {
        const seed = r.pick(seeds).replace('Call-ID: fz@', `Call-ID: fz${i}@`);
        const input = r.chance(0.1) ? r.bytes(r.int(1500)) : Buffer.from(mutateText(seed, r), 'latin1');
        sent.set(`fz${i}@127.0.0.1`, short(input));
        await new Promise<void>((resolve) => sock.send(input, port, '127.0.0.1', () => resolve()));
        rec.count('sent');
        // Let the listener drain now and then rather than overflow its socket buffer.
        if (i % 50 === 49) await new Promise((res) => setTimeout(res, 5));
      }
      const liveness = sipSeeds(port)[1]!.replace('Call-ID: fz@127.0.0.1', 'Call-ID: liveness').replace('Via: SIP/2.0/UDP 127.0.0.1:9', `Via: SIP/2.0/UDP 127.0.0.1:${sock.address().port}`);
      const deadline = Date.now() + opts.deadlineMs;
      while (!options200 && Date.now() < deadline) {
        sock.send(liveness, port, '127.0.0.1');
        await new Promise((res) => setTimeout(res, 200));
      }
      if (!options200) rec.find('crash', `OPTIONS got no 200 within ${opts.deadlineMs} ms after the fuzz`, '(liveness check)');
    } finally {
      sock.close();
    }
  });
}

/** Every edge in turn, with its own derived seed; the WHIP key comes from a real CreateIngress. */
export async function fuzzAll(t: FuzzTarget, o: FuzzOptions, log: (line: string) => void = () => undefined): Promise<EdgeReport[]> {
  const token = await adminToken(t);
  const created = await fetch(`${t.url}/twirp/livekit.Ingress/CreateIngress`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ inputType: 'WHIP_INPUT', name: 'fz', roomName: ROOMS[0], participantIdentity: 'fz-whip' }),
  });
  const info = (await created.json()) as { streamKey?: string; stream_key?: string };
  const whipKey = info.streamKey ?? info.stream_key;
  if (!whipKey) throw new Error(`CreateIngress for the WHIP fuzz failed: ${JSON.stringify(info)}`);
  const runs: [string, () => Promise<EdgeReport>][] = [
    // SIP first: later edges create trunks and rules, and a fuzzed INVITE must not place real calls.
    ...(t.sipPort ? [['sip', () => fuzzSip(t, { ...o, seed: o.seed + 7 })] as [string, () => Promise<EdgeReport>]] : []),
    ['twirp', () => fuzzTwirp(t, { ...o, seed: o.seed + 1 })],
    ['rtc', () => fuzzRtc(t, { ...o, seed: o.seed + 2 })],
    ['agent', () => fuzzAgent(t, { ...o, seed: o.seed + 3 })],
    ['whip-whep', () => fuzzWhipWhep(t, { ...o, seed: o.seed + 4 }, whipKey)],
    ['rtmp', () => fuzzRtmp(t, { ...o, seed: o.seed + 5 })],
    ['internal-egress', () => fuzzInternal(t, { ...o, seed: o.seed + 6 })],
  ];
  const reports: EdgeReport[] = [];
  for (const [name, run] of runs) {
    log(`fuzzing ${name} (${o.inputs} inputs, seed ${o.seed})…`);
    const rep = await run();
    log(`  ${name}: ${rep.findings.length} finding(s) in ${rep.seconds} s, RSS ${rep.rssBeforeMb} → ${rep.rssAfterMb} MB, ${JSON.stringify(rep.outcomes)}`);
    reports.push(rep);
  }
  return reports;
}
