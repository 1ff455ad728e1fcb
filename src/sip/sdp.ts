// The SDP offer/answer of a phone call (RFC 3264): one audio stream, G.711 μ-law or A-law, and
// RFC 4733 telephone-event for DTMF. Pure: the offer in, the chosen codec and answer out.
import sdpTransform from 'sdp-transform';

export type CallCodec = 'PCMU' | 'PCMA';

export interface CallOffer {
  /** Where the caller receives RTP. */
  address: string;
  port: number;
  codec: CallCodec;
  payloadType: number;
  /** telephone-event/8000 payload type, when offered. */
  dtmfPayloadType: number | undefined;
}

const STATIC: Record<number, CallCodec> = { 0: 'PCMU', 8: 'PCMA' };

/**
 * Picks the codec for the answer: the caller's first G.711 (its preference order). Undefined when
 * the offer has no usable audio (the call gets 488 Not Acceptable Here).
 */
export function readOffer(sdp: string): CallOffer | undefined {
  let parsed: sdpTransform.SessionDescription;
  try {
    parsed = sdpTransform.parse(sdp);
  } catch {
    return undefined;
  }
  // sdp-transform types every value as a string but turns all-digit ones into numbers: String() each.
  const audio = parsed.media.find((m) => String(m.type) === 'audio' && Number.isInteger(m.port) && m.port > 0 && m.port < 65536 && /RTP\/AVP$/.test(String(m.protocol)));
  if (!audio) return undefined;
  const ip = audio.connection?.ip ?? parsed.connection?.ip;
  const address = ip === undefined ? undefined : String(ip);
  if (!address || (audio.connection?.version ?? parsed.connection?.version) === 6) return undefined;
  const rtpmap = new Map(audio.rtp.map((r) => [r.payload, String(r.codec).toUpperCase()]));
  const payloads = String(audio.payloads ?? '').split(/\s+/).filter(Boolean).map(Number);
  let chosen: { pt: number; codec: CallCodec } | undefined;
  for (const pt of payloads) {
    const name = rtpmap.get(pt) ?? STATIC[pt];
    if (name === 'PCMU' || name === 'PCMA') {
      chosen = { pt, codec: name };
      break;
    }
  }
  if (!chosen) return undefined;
  const dtmf = audio.rtp.find((r) => String(r.codec).toLowerCase() === 'telephone-event' && (r.rate ?? 8000) === 8000);
  return { address, port: audio.port, codec: chosen.codec, payloadType: chosen.pt, dtmfPayloadType: dtmf?.payload };
}

/** The session part of our SDP (origin, name, connection, timing), before the audio section. */
function sessionLines(local: { address: string; sessionId: number }): string[] {
  return ['v=0', `o=roomgate ${local.sessionId} ${local.sessionId} IN IP4 ${local.address}`, 's=roomgate', `c=IN IP4 ${local.address}`, 't=0 0'];
}

/** The answer: our address and RTP port, the chosen codec, and telephone-event if offered. */
export function writeAnswer(offer: CallOffer, local: { address: string; port: number; sessionId: number }): string {
  const pts = [offer.payloadType, ...(offer.dtmfPayloadType !== undefined ? [offer.dtmfPayloadType] : [])];
  const lines = [
    ...sessionLines(local),
    `m=audio ${local.port} RTP/AVP ${pts.join(' ')}`,
    `a=rtpmap:${offer.payloadType} ${offer.codec}/8000`,
    ...(offer.dtmfPayloadType !== undefined ? [`a=rtpmap:${offer.dtmfPayloadType} telephone-event/8000`, `a=fmtp:${offer.dtmfPayloadType} 0-16`] : []),
    'a=ptime:20',
    'a=sendrecv',
  ];
  return `${lines.join('\r\n')}\r\n`;
}

/** Our offer when we dial out: μ-law first, A-law, and telephone-event 101 for DTMF both ways. */
export function writeOffer(local: { address: string; port: number; sessionId: number }): string {
  const lines = [
    ...sessionLines(local),
    `m=audio ${local.port} RTP/AVP 0 8 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:8 PCMA/8000',
    'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-16',
    'a=ptime:20',
    'a=sendrecv',
  ];
  return `${lines.join('\r\n')}\r\n`;
}
