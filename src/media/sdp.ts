// The one place that reads and writes SDP (WHIP publish offers, WHEP play offers, their answers and
// trickle-ice-sdpfrag PATCH bodies). mediasoup has no SDP API, so this module turns an offer into
// mediasoup parameters and writes the answer from what mediasoup created. RTMP ingress and room
// signaling never see SDP: they exchange mediasoup parameters directly.
//
// Everything here is pure (no mediasoup objects), so the parser can be fuzzed without a worker.
// Any offer we cannot serve raises SdpError with a sentence for the RFC 9457 `detail`.
import sdpTransform, { type MediaAttributes, type MediaDescription, type SessionDescription } from 'sdp-transform';
import type { types } from 'mediasoup';
import { codecParametersProblem, fmtpEntryProblem } from './codecs.ts';

export class SdpError extends Error {
  override name = 'SdpError';
}

/** Offers larger than this are refused before parsing (a real offer is 3–12 kB). */
export const MAX_SDP_BYTES = 64 * 1024;

export type MediaKind = 'audio' | 'video';

export interface DtlsFingerprint {
  algorithm: string;
  value: string;
}

export const URI = {
  mid: 'urn:ietf:params:rtp-hdrext:sdes:mid',
  rid: 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
  rrid: 'urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id',
  absSendTime: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
  transportCc: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
  audioLevel: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level',
  videoOrientation: 'urn:3gpp:video-orientation',
  toffset: 'urn:ietf:params:rtp-hdrext:toffset',
} as const;

/** Header extensions mediasoup understands, per kind (its supportedRtpCapabilities, minus experiments). */
const SUPPORTED_EXTENSIONS: Record<MediaKind, string[]> = {
  audio: [URI.mid, URI.absSendTime, URI.transportCc, URI.audioLevel],
  video: [URI.mid, URI.rid, URI.rrid, URI.absSendTime, URI.transportCc, URI.videoOrientation, URI.toffset],
};

/** RTCP feedback mediasoup acts on, per kind. */
const SUPPORTED_FEEDBACK: Record<MediaKind, string[]> = {
  audio: ['transport-cc'],
  video: ['nack', 'nack pli', 'ccm fir', 'goog-remb', 'transport-cc'],
};

/** A codec as the answer writes it and mediasoup wants it (payload type from the offer). */
export interface SdpCodec {
  mimeType: string;
  payloadType: number;
  clockRate: number;
  channels?: number;
  parameters: Record<string, string | number>;
  rtcpFeedback: types.RtcpFeedback[];
}

export interface SdpExtension {
  id: number;
  uri: string;
}

/** One offered m-line, normalised. */
export interface OfferedMedia {
  index: number;
  kind: MediaKind;
  mid: string;
  direction: 'sendonly' | 'recvonly' | 'sendrecv' | 'inactive';
  codecs: SdpCodec[];
  extensions: SdpExtension[];
  /** Primary SSRCs with their RTX SSRC, in SIM order when legacy simulcast is offered. */
  ssrcs: { ssrc: number; rtxSsrc?: number }[];
  /** RIDs the offerer sends (a=simulcast:send), in order. */
  sendRids: string[];
  cname?: string;
  /** The sender's MediaStreamTrack id (second part of a=msid), which LiveKit clients call the cid. */
  trackId?: string;
}

/** An offered m=application (SCTP data channels), kept apart from the RTP m-lines. */
export interface OfferedData {
  index: number;
  mid: string;
}

export interface ParseOfferOptions {
  /** Accept one m=application (SCTP) line; it is returned as `data`. Default false (WHIP/WHEP). */
  allowData?: boolean;
  /** Most m-lines accepted; default 8. */
  maxMedia?: number;
}

export interface ParsedOffer {
  iceUfrag: string;
  icePwd: string;
  fingerprints: DtlsFingerprint[];
  setup: 'actpass' | 'active';
  media: OfferedMedia[];
  data?: OfferedData;
}

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new SdpError(message);
}

const TOKEN = /^[\x21-\x7e]{1,256}$/;

/**
 * Parses an offer and checks the WebRTC parts every use needs: BUNDLE of all m-lines, rtcp-mux, one
 * ICE ufrag/pwd and DTLS fingerprint, a usable setup role, and RTP audio/video m-lines only.
 */
/** Size, shape and parse checks every description we read gets; `body` names it in the errors. */
function parseDescription(text: string, body: string, kind: string): { session: SessionDescription; media: SessionDescription['media'] } {
  assert(typeof text === 'string' && text.length > 0, `the ${body} is empty`);
  assert(Buffer.byteLength(text) <= MAX_SDP_BYTES, `the ${kind} is larger than ${MAX_SDP_BYTES} bytes`);
  assert(/^v=0\r?\n/.test(text), `the ${body} is not SDP (it must start with 'v=0')`);
  let session: SessionDescription;
  try {
    session = sdpTransform.parse(text);
  } catch (err) {
    throw new SdpError(`the SDP does not parse: ${(err as Error).message}`);
  }
  return { session, media: Array.isArray(session.media) ? session.media : [] };
}

export function parseOffer(text: string, opts: ParseOfferOptions = {}): ParsedOffer {
  const { session, media } = parseDescription(text, 'body', 'offer');
  assert(media.length > 0, 'the offer has no m-line');
  assert(media.length <= (opts.maxMedia ?? 8), 'the offer has too many m-lines');

  const first = media[0]!;
  // sdp-transform turns all-digit values into numbers (a ufrag such as "1234" included).
  const asText = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v) : undefined);
  const iceUfrag = asText(first.iceUfrag ?? session.iceUfrag);
  const icePwd = asText(first.icePwd ?? session.icePwd);
  assert(typeof iceUfrag === 'string' && TOKEN.test(iceUfrag), 'the offer has no valid a=ice-ufrag');
  assert(typeof icePwd === 'string' && TOKEN.test(icePwd), 'the offer has no valid a=ice-pwd');
  const fp = first.fingerprint ?? session.fingerprint;
  assert(
    fp && typeof fp.type === 'string' && typeof fp.hash === 'string' && /^[0-9A-Fa-f:]{20,}$/.test(fp.hash),
    'the offer has no valid a=fingerprint (DTLS is required)',
  );
  const algorithm = fp.type.toLowerCase();
  assert(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512'].includes(algorithm), `unsupported fingerprint algorithm '${fp.type}'`);
  const setup = (first.setup ?? session.setup ?? 'actpass') as string;
  assert(
    setup === 'actpass' || setup === 'active',
    `a=setup:${setup} is not supported: offer actpass or active (this endpoint is the DTLS server)`,
  );

  const bundle = (session.groups ?? []).find((g) => g.type === 'BUNDLE');
  assert(bundle, 'the offer must use a=group:BUNDLE (max-bundle)');
  const bundled = new Set(String(bundle.mids).split(' '));

  const seenMids = new Set<string>();
  const midOf = (m: MediaDescription, index: number) => {
    // sdp-transform turns a numeric mid ("0") into a number.
    const mid = typeof m.mid === 'string' || typeof m.mid === 'number' ? String(m.mid) : '';
    assert(mid.length > 0 && mid.length <= 32 && TOKEN.test(mid), `m-line ${index}: a=mid is missing`);
    assert(!seenMids.has(mid), `m-line ${index}: a=mid:${mid} is used twice`);
    seenMids.add(mid);
    // A rejected m-line (port 0) stays in later offers, outside the BUNDLE group.
    assert(m.port === 0 || bundled.has(mid), `m-line ${index}: mid ${mid} is not in the BUNDLE group`);
    return mid;
  };
  let data: OfferedData | undefined;
  const rtpLines = media.flatMap((m, index) => {
    if (m.type !== 'application' || !opts.allowData) return [{ m, index }];
    assert(!data, `m-line ${index}: only one m=application line is supported`);
    assert(/^UDP\/DTLS\/SCTP$/i.test(String(m.protocol)), `m-line ${index}: protocol '${m.protocol}' is not UDP/DTLS/SCTP`);
    data = { index, mid: midOf(m, index) };
    return [];
  });
  const out: OfferedMedia[] = rtpLines.map(({ m, index }) => {
    assert(m.type === 'audio' || m.type === 'video', `m-line ${index}: media type '${m.type}' is not supported (audio and video only)`);
    assert(/UDP\/TLS\/RTP\/SAVPF/i.test(String(m.protocol)), `m-line ${index}: protocol '${m.protocol}' is not UDP/TLS/RTP/SAVPF`);
    const mid = midOf(m, index);
    assert(m.rtcpMux === 'rtcp-mux', `m-line ${index}: a=rtcp-mux is required`);
    const direction = m.port === 0 ? 'inactive' : (m.direction ?? 'sendrecv');
    assert(['sendonly', 'recvonly', 'sendrecv', 'inactive'].includes(direction), `m-line ${index}: bad direction`);
    return {
      index,
      kind: m.type,
      mid,
      direction: direction as OfferedMedia['direction'],
      codecs: offeredCodecs(m, m.type),
      extensions: (m.ext ?? [])
        .filter((e) => Number.isInteger(e.value) && e.value >= 1 && e.value <= 255 && typeof e.uri === 'string')
        .map((e) => ({ id: e.value, uri: e.uri })),
      ssrcs: offeredSsrcs(m),
      sendRids: offeredRids(m),
      ...cnameOf(m),
      ...msidTrackOf(m),
    };
  });
  return { iceUfrag, icePwd, fingerprints: [{ algorithm, value: fp.hash.toUpperCase() }], setup, media: out, ...(data ? { data } : {}) };
}

function parseFmtp(config: string): Record<string, string | number> {
  const params: Record<string, string | number> = {};
  for (const part of config.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim();
    const raw = part.slice(eq + 1).trim();
    if (!key || key === '__proto__') continue;
    params[key] = /^\d{1,9}$/.test(raw) ? Number(raw) : raw;
  }
  return params;
}

function offeredCodecs(m: MediaDescription, kind: MediaKind): SdpCodec[] {
  const codecs: SdpCodec[] = [];
  for (const rtp of m.rtp ?? []) {
    if (!Number.isInteger(rtp.payload) || rtp.payload < 0 || rtp.payload > 127) continue;
    if (typeof rtp.codec !== 'string' || !Number.isInteger(rtp.rate)) continue;
    const fmtp = (m.fmtp ?? []).filter((f) => f.payload === rtp.payload).map((f) => f.config).join(';');
    const fb = (m.rtcpFb ?? [])
      .filter((f) => String(f.payload) === String(rtp.payload) || f.payload === '*')
      .map((f) => ({ type: String(f.type), parameter: f.subtype ? String(f.subtype) : '' }));
    codecs.push({
      mimeType: `${kind}/${rtp.codec}`,
      payloadType: rtp.payload,
      clockRate: rtp.rate!,
      ...(kind === 'audio' ? { channels: Number.isInteger(rtp.encoding) ? rtp.encoding! : 1 } : {}),
      parameters: parseFmtp(fmtp),
      rtcpFeedback: fb,
    });
  }
  return codecs;
}

function offeredSsrcs(m: MediaDescription): OfferedMedia['ssrcs'] {
  const all = [...new Set((m.ssrcs ?? []).map((s) => Number(s.id)).filter((n) => Number.isInteger(n) && n > 0 && n <= 0xffffffff))];
  if (all.length === 0) return [];
  const groups = (m.ssrcGroups ?? []).map((g) => ({ semantics: g.semantics, ssrcs: String(g.ssrcs).split(' ').map(Number) }));
  const rtxOf = new Map<number, number>();
  for (const g of groups) if (g.semantics === 'FID' && g.ssrcs.length === 2) rtxOf.set(g.ssrcs[0]!, g.ssrcs[1]!);
  const rtxSsrcs = new Set(rtxOf.values());
  const sim = groups.find((g) => g.semantics === 'SIM');
  const primaries = sim ? sim.ssrcs.filter((s) => all.includes(s)) : all.filter((s) => !rtxSsrcs.has(s)).slice(0, 1);
  return primaries.map((ssrc) => ({ ssrc, ...(rtxOf.has(ssrc) ? { rtxSsrc: rtxOf.get(ssrc)! } : {}) }));
}

function offeredRids(m: MediaDescription): string[] {
  if (!m.simulcast || !m.rids) return [];
  const list = m.simulcast.dir1 === 'send' ? m.simulcast.list1 : m.simulcast.dir2 === 'send' ? m.simulcast.list2 : undefined;
  if (!list) return [];
  const sendRids = new Set(m.rids.filter((r) => r.direction === 'send').map((r) => String(r.id)));
  // "a;b;c" or alternatives "a,~b": the first choice of each stream, paused (~) ones included.
  return String(list)
    .split(';')
    .map((alt) => alt.split(',')[0]!.replace(/^~/, ''))
    .filter((rid) => sendRids.has(rid) && /^[A-Za-z0-9_-]{1,16}$/.test(rid));
}

function msidTrackOf(m: MediaDescription): { trackId?: string } {
  // sdp-transform 3 parses a=msid into a list of {id, appdata}; older typings call it a string.
  const msid = (m as unknown as { msid?: unknown }).msid;
  const first = Array.isArray(msid) ? (msid[0] as { appdata?: unknown } | undefined) : undefined;
  const track = first?.appdata === undefined ? '' : String(first.appdata);
  return TOKEN.test(track) ? { trackId: track } : {};
}

function cnameOf(m: MediaDescription): { cname?: string } {
  const value = (m.ssrcs ?? []).find((s) => s.attribute === 'cname')?.value;
  const c = value === undefined ? '' : String(value);
  return TOKEN.test(c) ? { cname: c } : {};
}

// ---- codecs we can route -----------------------------------------------------------------------

/** Constrained baseline, the H.264 profile the routers carry (RFC 6184 profile-level-id patterns). */
function isConstrainedBaseline(profileLevelId: unknown): boolean {
  const id = String(profileLevelId ?? '42e01f');
  if (!/^[0-9a-fA-F]{6}$/.test(id)) return false;
  const idc = parseInt(id.slice(0, 2), 16);
  const iop = parseInt(id.slice(2, 4), 16);
  if (idc === 0x42) return (iop & 0x4f) === 0x40; // x1xx0000
  if (idc === 0x4d) return (iop & 0x8f) === 0x80; // 1xxx0000
  if (idc === 0x58) return (iop & 0xcf) === 0xc0; // 11xx0000
  return false;
}

/** Whether a router carrying `routerCodecs` can take this codec as is (no transcoding). */
function routable(codec: SdpCodec, routerCodecs: types.RtpCodecCapability[]): boolean {
  const mime = codec.mimeType.toLowerCase();
  return routerCodecs.some((rc) => {
    if (rc.mimeType.toLowerCase() !== mime || rc.clockRate !== codec.clockRate) return false;
    if (mime === 'audio/opus') return codec.channels === 2;
    if (mime === 'video/h264') {
      return Number(codec.parameters['packetization-mode'] ?? 0) === 1 && isConstrainedBaseline(codec.parameters['profile-level-id']);
    }
    return true;
  });
}

function rtxFor(codec: SdpCodec, media: OfferedMedia): SdpCodec | undefined {
  return media.codecs.find((c) => c.mimeType.toLowerCase().endsWith('/rtx') && Number(c.parameters.apt) === codec.payloadType);
}

function keepFeedback(codec: SdpCodec, kind: MediaKind, extensions: SdpExtension[]): types.RtcpFeedback[] {
  const hasTcc = extensions.some((e) => e.uri === URI.transportCc);
  const seen = new Set<string>();
  return codec.rtcpFeedback.filter((fb) => {
    const key = fb.parameter ? `${fb.type} ${fb.parameter}` : fb.type;
    if (!SUPPORTED_FEEDBACK[kind].includes(key) || seen.has(key)) return false;
    if (fb.type === 'transport-cc' && !hasTcc) return false;
    seen.add(key);
    return true;
  });
}

function keepExtensions(media: OfferedMedia): SdpExtension[] {
  const seenUri = new Set<string>();
  const seenId = new Set<number>();
  return media.extensions.filter((e) => {
    if (!SUPPORTED_EXTENSIONS[media.kind].includes(e.uri) || seenUri.has(e.uri) || seenId.has(e.id)) return false;
    if (e.id > 14) return false; // two-byte header extensions: mediasoup 3.8 routers use one-byte ids
    seenUri.add(e.uri);
    seenId.add(e.id);
    return true;
  });
}

// ---- WHIP: publish ------------------------------------------------------------------------------

export interface PublishMedia {
  mid: string;
  kind: MediaKind;
  /** What the answer says about this m-line. */
  answer: AnswerMedia;
  /** The Producer's parameters (the publisher's own payload types, SSRCs or RIDs). */
  rtpParameters: types.RtpParameters;
}

/**
 * A WHIP offer as Producers: at most one audio and one video m-line, each sendonly (or sendrecv),
 * each with a codec the router carries. No partial answers: one unusable m-line fails the offer.
 */
export function negotiatePublish(offer: ParsedOffer, routerCodecs: types.RtpCodecCapability[]): PublishMedia[] {
  const counts = { audio: 0, video: 0 };
  for (const m of offer.media) counts[m.kind]++;
  assert(counts.audio <= 1 && counts.video <= 1, `WHIP takes at most one audio and one video track (offer has ${counts.audio} audio, ${counts.video} video)`);
  const ssrcs = offer.media.flatMap((m) => m.ssrcs.flatMap((s) => [s.ssrc, ...(s.rtxSsrc ? [s.rtxSsrc] : [])]));
  assert(new Set(ssrcs).size === ssrcs.length, 'the same SSRC appears twice in the offer');
  return offer.media.map((m) => {
    assert(m.direction === 'sendonly' || m.direction === 'sendrecv', `m-line ${m.index} (${m.kind}) is ${m.direction}: a WHIP offer must be sendonly`);
    return negotiateSendMedia(m, routerCodecs);
  });
}

/**
 * One offered sending m-line as a Producer: the first codec the router carries (RED, AV1 and other
 * codecs mediasoup cannot route are left out of the answer), its RTX, the header extensions and
 * feedback mediasoup acts on, and the encodings (simulcast by RID or SSRC, or one stream).
 */
export function negotiateSendMedia(m: OfferedMedia, routerCodecs: types.RtpCodecCapability[]): PublishMedia {
  {
    const codec = m.codecs.find((c) => routable(c, routerCodecs));
    const offered = m.codecs.filter((c) => !/\/(rtx|red|ulpfec|flexfec-03|cn|telephone-event)$/i.test(c.mimeType)).map((c) => c.mimeType.split('/')[1]);
    assert(
      codec,
      `m-line ${m.index} (${m.kind}): no supported codec offered (have ${[...new Set(offered)].join(', ') || 'none'}; ` +
        `supported: ${m.kind === 'audio' ? 'opus/48000/2' : 'VP8, H264 constrained baseline packetization-mode=1'})`,
    );
    const codecProblem = codecParametersProblem(codec.mimeType, codec.parameters);
    assert(!codecProblem, `m-line ${m.index} (${m.kind}): ${codecProblem}`);
    const extensions = keepExtensions(m);
    const has = (uri: string) => extensions.some((e) => e.uri === uri);
    const rtx = m.kind === 'video' ? rtxFor(codec, m) : undefined;
    const chosen: SdpCodec = { ...codec, rtcpFeedback: keepFeedback(codec, m.kind, extensions) };
    const codecs: SdpCodec[] = rtx ? [chosen, { ...rtx, parameters: { apt: codec.payloadType }, rtcpFeedback: [] }] : [chosen];

    let encodings: types.RtpEncodingParameters[];
    let rids: string[] = [];
    if (m.sendRids.length > 0) {
      assert(m.kind === 'video', `m-line ${m.index}: simulcast is for video only`);
      assert(has(URI.rid), `m-line ${m.index}: simulcast RIDs need the rtp-stream-id header extension`);
      assert(m.sendRids.length <= 4, `m-line ${m.index}: at most 4 simulcast layers`);
      rids = m.sendRids;
      encodings = rids.map((rid) => ({ rid }));
    } else if (m.ssrcs.length > 0) {
      assert(m.ssrcs.length <= 4, `m-line ${m.index}: at most 4 simulcast layers`);
      encodings = m.ssrcs.map(({ ssrc, rtxSsrc }) => ({ ssrc, ...(rtx && rtxSsrc ? { rtx: { ssrc: rtxSsrc } } : {}) }));
    } else {
      assert(has(URI.mid), `m-line ${m.index}: the offer has no a=ssrc, no RIDs and no mid header extension, so its RTP cannot be identified`);
      encodings = [{}];
    }
    const rtpParameters: types.RtpParameters = {
      mid: m.mid,
      codecs: codecs.map((c) => ({
        mimeType: c.mimeType,
        payloadType: c.payloadType,
        clockRate: c.clockRate,
        ...(c.channels !== undefined ? { channels: c.channels } : {}),
        parameters: c.parameters,
        rtcpFeedback: c.rtcpFeedback,
      })),
      headerExtensions: extensions.map((e) => ({ uri: e.uri, id: e.id })),
      encodings,
      rtcp: { cname: m.cname ?? `whip-${m.mid}`, reducedSize: true },
    };
    return {
      mid: m.mid,
      kind: m.kind,
      rtpParameters,
      answer: { mid: m.mid, kind: m.kind, direction: 'recvonly', codecs, extensions, recvRids: rids },
    };
  }
}

// ---- WHEP: play ---------------------------------------------------------------------------------

export interface PlayMedia {
  mid: string;
  kind: MediaKind;
  /** The offered codecs we can send, with the offerer's payload types. */
  codecs: SdpCodec[];
  /** The viewer's capabilities for mediasoup's consume(). */
  rtpCapabilities: types.RtpCapabilities;
}

/**
 * A WHEP offer: recvonly (or sendrecv) m-lines, at most one audio and one video. RTX is left out:
 * the SFU's RTX payload type is its own, and mediasoup retransmits on the original stream without it.
 */
export function negotiatePlay(offer: ParsedOffer, routerCaps: types.RtpCapabilities): PlayMedia[] {
  const counts = { audio: 0, video: 0 };
  for (const m of offer.media) counts[m.kind]++;
  assert(counts.audio <= 1 && counts.video <= 1, 'a WHEP offer takes at most one audio and one video m-line');
  return offer.media.map((m) => {
    assert(m.direction === 'recvonly' || m.direction === 'sendrecv', `m-line ${m.index} (${m.kind}) is ${m.direction}: a WHEP offer must be recvonly`);
    const routerCodecs = (routerCaps.codecs ?? []).filter((c) => c.kind === m.kind && !c.mimeType.toLowerCase().endsWith('/rtx'));
    const usable = m.codecs.filter((c) => routable(c, routerCodecs));
    assert(usable.length > 0, `m-line ${m.index} (${m.kind}): none of the offered codecs can be sent (the room carries opus, VP8, H264 constrained baseline)`);
    const extensions = keepExtensions(m);
    // The consumer sends the router's extension ids; keep only those the offerer did not give another meaning.
    const routerExt = (routerCaps.headerExtensions ?? []).filter((h) => h.kind === m.kind);
    const headerExtensions = extensions.flatMap((e) => {
      const re = routerExt.find((h) => h.uri === e.uri);
      if (!re) return [];
      const clash = m.extensions.some((o) => o.id === re.preferredId && o.uri !== e.uri);
      return clash ? [] : [{ kind: m.kind, uri: re.uri, preferredId: re.preferredId, preferredEncrypt: false, direction: 'sendrecv' as const }];
    });
    return {
      mid: m.mid,
      kind: m.kind,
      codecs: usable,
      rtpCapabilities: {
        codecs: usable.map((c) => ({
          kind: m.kind,
          mimeType: c.mimeType,
          preferredPayloadType: c.payloadType,
          clockRate: c.clockRate,
          ...(c.channels !== undefined ? { channels: c.channels } : {}),
          parameters: c.parameters,
          rtcpFeedback: keepFeedback(c, m.kind, extensions),
        })),
        headerExtensions,
      },
    };
  });
}

/**
 * Router codecs for one WHEP viewer: each source track's codec under the payload type the viewer
 * offered for it. mediasoup consumers send the Router's payload types, and a recvonly offerer expects
 * its own (RFC 3264 §5.1), so a viewer gets a Router of its own that speaks them.
 */
export function viewerRouterCodecs(picks: { media: PlayMedia; sourceCodec: types.RtpCodecParameters }[]): types.RtpCodecCapability[] {
  return picks.map(({ media, sourceCodec }) => {
    const source: SdpCodec = {
      mimeType: sourceCodec.mimeType,
      payloadType: sourceCodec.payloadType,
      clockRate: sourceCodec.clockRate,
      ...(sourceCodec.channels !== undefined ? { channels: sourceCodec.channels } : {}),
      parameters: (sourceCodec.parameters ?? {}) as Record<string, string | number>,
      rtcpFeedback: [],
    };
    const offered = media.codecs.find((c) => routable(c, [{ kind: media.kind, mimeType: source.mimeType, clockRate: source.clockRate, parameters: source.parameters }]));
    assert(offered, `m-line ${media.mid} (${media.kind}): the track is ${source.mimeType}, which the offer does not accept`);
    return {
      kind: media.kind,
      mimeType: source.mimeType,
      clockRate: source.clockRate,
      ...(source.channels !== undefined ? { channels: source.channels } : {}),
      parameters: source.parameters,
      preferredPayloadType: offered.payloadType,
    };
  });
}

/** The answer m-line for a consumer: exactly what mediasoup will send. */
export function consumerAnswerMedia(mid: string, kind: MediaKind, rtp: types.RtpParameters, streamId: string, trackId: string): AnswerMedia {
  const codecs: SdpCodec[] = rtp.codecs.map((c) => ({
    mimeType: c.mimeType,
    payloadType: c.payloadType,
    clockRate: c.clockRate,
    ...(c.channels !== undefined ? { channels: c.channels } : {}),
    parameters: (c.parameters ?? {}) as Record<string, string | number>,
    rtcpFeedback: c.rtcpFeedback ?? [],
  }));
  const enc = rtp.encodings?.[0];
  return {
    mid,
    kind,
    direction: 'sendonly',
    codecs,
    extensions: (rtp.headerExtensions ?? []).map((h) => ({ id: h.id, uri: h.uri })),
    recvRids: [],
    ...(enc?.ssrc ? { send: { ssrc: enc.ssrc, ...(enc.rtx?.ssrc ? { rtxSsrc: enc.rtx.ssrc } : {}), cname: rtp.rtcp?.cname ?? 'roomgate', streamId, trackId } } : {}),
  };
}

// ---- the answer ---------------------------------------------------------------------------------

export interface AnswerMedia {
  mid: string;
  kind: MediaKind;
  direction: 'recvonly' | 'sendonly' | 'inactive';
  codecs: SdpCodec[];
  extensions: SdpExtension[];
  recvRids: string[];
  send?: { ssrc: number; rtxSsrc?: number; cname: string; streamId: string; trackId: string };
}

export interface IceCandidateLike {
  foundation: string;
  priority: number;
  ip: string;
  protocol: 'udp' | 'tcp';
  port: number;
  type: string;
  tcpType?: string;
}

export interface AnswerTransport {
  iceUfrag: string;
  icePwd: string;
  candidates: IceCandidateLike[];
  fingerprints: DtlsFingerprint[];
}

function candidateLines(candidates: IceCandidateLike[]) {
  return candidates.map((c) => ({
    foundation: c.foundation,
    component: 1,
    transport: c.protocol.toUpperCase(),
    priority: c.priority,
    ip: c.ip,
    port: c.port,
    type: c.type,
    ...(c.protocol === 'tcp' ? { tcptype: c.tcpType ?? 'passive' } : {}),
  }));
}

/**
 * The answer: ICE-lite, DTLS passive (we are the DTLS server), all candidates in every m-line
 * (the server never trickles), one m-line per offered one, in order.
 */
export function writeAnswer(offer: ParsedOffer, media: AnswerMedia[], transport: AnswerTransport, sessionId: string): string {
  const fp = transport.fingerprints.find((f) => f.algorithm === 'sha-256') ?? transport.fingerprints[0];
  assert(fp, 'no local DTLS fingerprint');
  const firstCandidate = transport.candidates[0];
  const ipVer = firstCandidate?.ip.includes(':') ? 6 : 4;
  const mids = media.map((m) => m.mid);
  const session: SessionDescription = {
    version: 0,
    origin: { username: '-', sessionId, sessionVersion: 1, netType: 'IN', ipVer, address: firstCandidate?.ip ?? '127.0.0.1' },
    name: '-',
    timing: { start: 0, stop: 0 },
    icelite: 'ice-lite',
    groups: [{ type: 'BUNDLE', mids: mids.join(' ') }],
    msidSemantic: { semantic: 'WMS', token: '*' },
    fingerprint: { type: fp.algorithm, hash: fp.value },
    media: media.map((m) => rtpSection(m, transport, 'passive')),
  };
  void offer;
  return sdpTransform.write(session);
}

/** One RTP m-line of a description we write: candidates, the codecs and extensions given, our SSRC and msid when sending. */
function rtpSection(m: AnswerMedia, transport: AnswerTransport, setup: 'passive' | 'actpass', port?: number): MediaDescription {
  const firstCandidate = transport.candidates[0];
  const ipVer = firstCandidate?.ip.includes(':') ? 6 : 4;
  const attrs: MediaDescription & MediaAttributes = {
    type: m.kind,
    port: port ?? firstCandidate?.port ?? 9,
    protocol: 'UDP/TLS/RTP/SAVPF',
    payloads: m.codecs.map((c) => c.payloadType).join(' '),
    connection: { version: ipVer, ip: firstCandidate?.ip ?? '0.0.0.0' },
    mid: m.mid,
    direction: m.direction,
    iceUfrag: transport.iceUfrag,
    icePwd: transport.icePwd,
    setup,
    candidates: candidateLines(transport.candidates),
    endOfCandidates: 'end-of-candidates',
    rtcpMux: 'rtcp-mux',
    rtcpRsize: 'rtcp-rsize',
    rtp: m.codecs.map((c) => ({
      payload: c.payloadType,
      codec: c.mimeType.split('/')[1]!,
      rate: c.clockRate,
      ...(c.channels && c.channels > 1 ? { encoding: c.channels } : {}),
    })),
    fmtp: m.codecs
      .filter((c) => Object.keys(c.parameters).length > 0)
      .map((c) => ({ payload: c.payloadType, config: Object.entries(c.parameters).map(([k, v]) => `${k}=${v}`).join(';') })),
    rtcpFb: m.codecs.flatMap((c) => c.rtcpFeedback.map((fb) => ({ payload: c.payloadType, type: fb.type, ...(fb.parameter ? { subtype: fb.parameter } : {}) }))),
    ext: m.extensions.map((e) => ({ value: e.id, uri: e.uri })),
  };
  if (m.recvRids.length > 0) {
    attrs.rids = m.recvRids.map((id) => ({ id, direction: 'recv' }));
    attrs.simulcast = { dir1: 'recv', list1: m.recvRids.join(';') };
  }
  if (m.send) {
    const { ssrc, rtxSsrc, cname } = m.send;
    // '|' stays: LiveKit clients read the publisher's participant sid from a stream id "PA_x|TR_y".
    const streamId = m.send.streamId.replace(/[^\w|-]/g, '-');
    const trackId = m.send.trackId.replace(/[^\w-]/g, '-');
    // sdp-transform 3 keeps a=msid as a list ({id, appdata}); its 2.x typings still say string.
    (attrs as unknown as { msid: { id: string; appdata: string }[] }).msid = [{ id: streamId, appdata: trackId }];
    attrs.ssrcs = [{ id: ssrc, attribute: 'cname', value: cname }, { id: ssrc, attribute: 'msid', value: `${streamId} ${trackId}` }];
    if (rtxSsrc) {
      attrs.ssrcs.push({ id: rtxSsrc, attribute: 'cname', value: cname }, { id: rtxSsrc, attribute: 'msid', value: `${streamId} ${trackId}` });
      attrs.ssrcGroups = [{ semantics: 'FID', ssrcs: `${ssrc} ${rtxSsrc}` }];
    }
  }
  return attrs;
}

// ---- two PeerConnections per participant (LiveKit clients) --------------------------------------
//
// A LiveKit client publishes on one PeerConnection (it offers, we answer) and receives on another
// (we offer, it answers). Both carry an m=application line for SCTP data channels, and m-lines
// we cannot take are rejected with port 0 rather than failing the whole description.

export interface SctpSettings {
  port: number;
  maxMessageSize: number;
}

export type DescriptionSection =
  | { type: 'rtp'; media: AnswerMedia }
  | { type: 'data'; mid: string; sctp: SctpSettings }
  /** A refused m-line: port 0, the first offered payload type (RFC 3264 §6). */
  | { type: 'rejected'; mid: string; kind: MediaKind | 'application'; payload: string };

/**
 * A whole offer (setup actpass) or answer (setup passive) in the sections' order. ICE-lite with all
 * candidates in every m-line: the server never trickles.
 */
export function writeDescription(kind: 'offer' | 'answer', sections: DescriptionSection[], transport: AnswerTransport, sessionId: string, version = 1): string {
  const fp = transport.fingerprints.find((f) => f.algorithm === 'sha-256') ?? transport.fingerprints[0];
  assert(fp, 'no local DTLS fingerprint');
  const setup = kind === 'offer' ? 'actpass' : 'passive';
  const firstCandidate = transport.candidates[0];
  const ipVer = firstCandidate?.ip.includes(':') ? 6 : 4;
  const live = sections.filter((s) => s.type !== 'rejected').map((s) => (s.type === 'rtp' ? s.media.mid : s.mid));
  const session: SessionDescription = {
    version: 0,
    origin: { username: '-', sessionId, sessionVersion: version, netType: 'IN', ipVer, address: firstCandidate?.ip ?? '127.0.0.1' },
    name: '-',
    timing: { start: 0, stop: 0 },
    icelite: 'ice-lite',
    ...(live.length > 0 ? { groups: [{ type: 'BUNDLE', mids: live.join(' ') }] } : {}),
    msidSemantic: { semantic: 'WMS', token: '*' },
    fingerprint: { type: fp.algorithm, hash: fp.value },
    media: sections.map((s): MediaDescription => {
      if (s.type === 'rtp') return rtpSection(s.media, transport, setup);
      if (s.type === 'rejected') {
        return {
          type: s.kind,
          port: 0,
          protocol: s.kind === 'application' ? 'UDP/DTLS/SCTP' : 'UDP/TLS/RTP/SAVPF',
          payloads: s.payload,
          connection: { version: ipVer, ip: '0.0.0.0' },
          mid: s.mid,
          direction: 'inactive',
          rtp: [],
          fmtp: [],
        };
      }
      const attrs: MediaDescription & MediaAttributes = {
        type: 'application',
        port: firstCandidate?.port ?? 9,
        protocol: 'UDP/DTLS/SCTP',
        payloads: 'webrtc-datachannel',
        connection: { version: ipVer, ip: firstCandidate?.ip ?? '0.0.0.0' },
        mid: s.mid,
        iceUfrag: transport.iceUfrag,
        icePwd: transport.icePwd,
        setup,
        candidates: candidateLines(transport.candidates),
        endOfCandidates: 'end-of-candidates',
        sctpPort: s.sctp.port,
        maxMessageSize: s.sctp.maxMessageSize,
        rtp: [],
        fmtp: [],
      };
      return attrs;
    }),
  };
  return sdpTransform.write(session);
}

/** What we need from a LiveKit client's answer to our offer: its DTLS identity and role. */
export interface ParsedAnswer {
  fingerprints: DtlsFingerprint[];
  /** The answerer's DTLS role: `active` makes it the DTLS client. */
  setup: 'active' | 'passive';
  /** mids the answerer accepted (port ≠ 0). */
  acceptedMids: string[];
}

export function parseAnswer(text: string): ParsedAnswer {
  const { session, media } = parseDescription(text, 'answer', 'answer');
  const first = media[0];
  const fp = first?.fingerprint ?? session.fingerprint;
  assert(
    fp && typeof fp.type === 'string' && typeof fp.hash === 'string' && /^[0-9A-Fa-f:]{20,}$/.test(fp.hash),
    'the answer has no valid a=fingerprint',
  );
  const setup = String(first?.setup ?? session.setup ?? 'active');
  assert(setup === 'active' || setup === 'passive', `a=setup:${setup} is not a valid answer role`);
  return {
    fingerprints: [{ algorithm: fp.type.toLowerCase(), value: fp.hash.toUpperCase() }],
    setup,
    acceptedMids: media.filter((m) => m.port !== 0 && m.mid !== undefined).map((m) => String(m.mid)),
  };
}

// ---- trickle-ice-sdpfrag (RFC 8840) ---------------------------------------------------------------

export interface SdpFrag {
  iceUfrag?: string;
  icePwd?: string;
  candidates: number;
}

/** Reads a PATCH body: the ICE credentials it carries (a restart when they are new) and how many candidates. */
export function parseSdpFrag(text: string): SdpFrag {
  assert(Buffer.byteLength(text) <= MAX_SDP_BYTES, 'the sdpfrag is too large');
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  assert(lines.length > 0, 'the sdpfrag is empty');
  const out: SdpFrag = { candidates: 0 };
  for (const line of lines) {
    assert(/^[a-z]=/.test(line), `not an SDP line: '${line.slice(0, 40)}'`);
    if (line.startsWith('a=ice-ufrag:')) out.iceUfrag = line.slice(12);
    else if (line.startsWith('a=ice-pwd:')) out.icePwd = line.slice(10);
    else if (line.startsWith('a=candidate:')) out.candidates++;
  }
  if (out.iceUfrag !== undefined) assert(TOKEN.test(out.iceUfrag), 'bad a=ice-ufrag');
  if (out.icePwd !== undefined) assert(TOKEN.test(out.icePwd), 'bad a=ice-pwd');
  assert((out.iceUfrag === undefined) === (out.icePwd === undefined), 'a=ice-ufrag and a=ice-pwd go together');
  return out;
}

/** The answer to an ICE restart: the new local credentials and all candidates (RFC 9725 §4.4.2). */
export function writeSdpFrag(transport: Omit<AnswerTransport, 'fingerprints'>, bundled: { mid: string; kind: MediaKind }): string {
  const lines = [`a=ice-lite`, `a=ice-ufrag:${transport.iceUfrag}`, `a=ice-pwd:${transport.icePwd}`];
  // One m-line: with BUNDLE, the candidates of the first m-line serve all of them.
  {
    lines.push(`m=${bundled.kind} 9 UDP/TLS/RTP/SAVPF 0`, `a=mid:${bundled.mid}`);
    for (const c of transport.candidates) {
      lines.push(
        `a=candidate:${c.foundation} 1 ${c.protocol.toUpperCase()} ${c.priority} ${c.ip} ${c.port} typ ${c.type}${c.protocol === 'tcp' ? ` tcptype ${c.tcpType ?? 'passive'}` : ''}`,
      );
    }
    lines.push('a=end-of-candidates');
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** One RTP stream a local receiver (FFmpeg) listens for: where, and the codec as mediasoup sends it. */
export interface RtpInputStream {
  kind: MediaKind;
  port: number;
  /** RTCP port; FFmpeg's RTP demuxer cannot use rtcp-mux. */
  rtcpPort: number;
  payloadType: number;
  mimeType: string;
  clockRate: number;
  channels?: number;
  parameters?: Record<string, unknown>;
}

/**
 * The SDP an RTP receiver (FFmpeg `-i in.sdp`) reads to receive PlainTransport consumers: one
 * m-line per stream, plain RTP/AVP (no SRTP, no rtcp-mux), fmtp copied from the consumer's codec.
 * `sources`: the only senders the receiver accepts (a=source-filter; FFmpeg binds its RTP sockets
 * to every interface whatever the address, and drops packets from anyone else).
 */
export function writeRtpInputSdp(streams: RtpInputStream[], address = '127.0.0.1', name = 'roomgate', sources: string[] = []): string {
  const ipVer = address.includes(':') ? 6 : 4;
  const session: SessionDescription = {
    version: 0,
    origin: { username: '-', sessionId: 0, sessionVersion: 0, netType: 'IN', ipVer, address },
    name,
    connection: { version: ipVer, ip: address },
    timing: { start: 0, stop: 0 },
    ...(sources.length > 0 ? { sourceFilter: { filterMode: 'incl' as const, netType: 'IN', addressTypes: `IP${ipVer}`, destAddress: address, srcList: sources.join(' ') } } : {}),
    media: streams.map((s) => {
      const [, codec = ''] = s.mimeType.split('/');
      // Defence in depth: publishing already refused such parameters, but a line break or `;`
      // written here would add SDP lines (another m-line, another port) for FFmpeg to obey.
      if (!/^[A-Za-z0-9_.-]{1,32}$/.test(codec)) throw new SdpError(`codec name '${codec.slice(0, 40)}' cannot be written into an SDP`);
      const entries = Object.entries(s.parameters ?? {}).filter((e): e is [string, string | number] => typeof e[1] === 'string' || typeof e[1] === 'number');
      for (const [k, v] of entries) {
        const problem = fmtpEntryProblem(k, v);
        if (problem) throw new SdpError(`${s.mimeType}: ${problem}`);
      }
      const fmtp = entries.map(([k, v]) => `${k}=${String(v)}`).join(';');
      const m: MediaDescription = {
        type: s.kind,
        port: s.port,
        protocol: 'RTP/AVP',
        payloads: String(s.payloadType),
        rtp: [{ payload: s.payloadType, codec, rate: s.clockRate, ...(s.channels && s.channels > 1 ? { encoding: s.channels } : {}) }],
        fmtp: fmtp ? [{ payload: s.payloadType, config: fmtp }] : [],
        rtcp: { port: s.rtcpPort },
        direction: 'recvonly',
      };
      return m;
    }),
  };
  return sdpTransform.write(session);
}
