// Codecs every room's Router offers: Opus, VP8 and H.264 constrained baseline (packetization-mode 1),
// the set browsers, OBS (WHIP) and FFmpeg can all send without transcoding.
import type { types } from 'mediasoup';

export const ROUTER_MEDIA_CODECS: types.RtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: { 'x-google-start-bitrate': 1000 } },
  {
    kind: 'video',
    mimeType: 'video/H264',
    clockRate: 90000,
    parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
  },
];

// Codec parameters (SDP fmtp) a publisher may set, per codec. They travel from the publisher's
// RTP parameters through mediasoup's consumers into the SDP the egress FFmpeg reads, so a value
// holding a line break or `;` would write lines of the publisher's choosing into that SDP (an
// m-line that makes FFmpeg listen elsewhere, say). Publishing checks them here; writeRtpInputSdp
// refuses them again. Keys are the RFC ones (RFC 7587 Opus, RFC 6184 H.264, RFC 7741 VP8, RFC 4588
// RTX) and the ones browsers and OBS send.
const FMTP_KEYS: Record<string, readonly string[]> = {
  'audio/opus': ['minptime', 'maxptime', 'ptime', 'useinbandfec', 'usedtx', 'stereo', 'sprop-stereo', 'maxplaybackrate', 'sprop-maxcapturerate', 'maxaveragebitrate', 'cbr'],
  'video/vp8': ['max-fr', 'max-fs'],
  'video/vp9': ['profile-id', 'max-fr', 'max-fs'],
  'video/h264': [
    'packetization-mode', 'profile-level-id', 'level-asymmetry-allowed', 'sprop-parameter-sets', 'sprop-level-parameter-sets',
    'max-mbps', 'max-smbps', 'max-fs', 'max-cpb', 'max-dpb', 'max-br', 'max-recv-level', 'in-band-parameter-sets', 'sprop-interleaving-depth',
  ],
  'video/av1': ['profile', 'level-idx', 'tier'],
  'video/rtx': ['apt', 'rtx-time'],
  'audio/rtx': ['apt', 'rtx-time'],
};
/** Chrome's own video hints (x-google-start-bitrate, …): harmless, and in our router's VP8 capability. */
const VENDOR_KEY = /^x-google-[a-z-]{1,40}$/;
/** An fmtp key: a token without `=`, `;` or white space. */
const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A value: visible ASCII without `;` (base64 `=` and `,` lists are fine); no CR, LF or space. */
const VALUE = /^[\x21-\x3a\x3c-\x7e]{1,1024}$/;

/** Why one fmtp entry cannot be written into an SDP line as it is (undefined when it can). */
export function fmtpEntryProblem(key: string, value: string | number): string | undefined {
  if (!KEY.test(key)) return `codec parameter name ${JSON.stringify(key.slice(0, 64))} is not a valid fmtp name`;
  if (typeof value === 'number' ? !Number.isFinite(value) : !VALUE.test(value)) {
    return `codec parameter ${JSON.stringify(key)} has a value that is not allowed (visible ASCII without ';', at most 1024 characters)`;
  }
  return undefined;
}

/** Why these codec parameters may not be published (undefined when they may). */
export function codecParametersProblem(mimeType: string, parameters: unknown): string | undefined {
  if (parameters === undefined || parameters === null) return undefined;
  if (typeof parameters !== 'object' || Array.isArray(parameters)) return `the parameters of ${mimeType} must be an object`;
  const allowed = FMTP_KEYS[mimeType.toLowerCase()] ?? [];
  for (const [key, value] of Object.entries(parameters)) {
    const shown = JSON.stringify(key.slice(0, 64));
    if (!KEY.test(key)) return `codec parameter name ${shown} of ${mimeType} is not a valid fmtp name`;
    if (!allowed.includes(key) && !(mimeType.toLowerCase().startsWith('video/') && VENDOR_KEY.test(key))) {
      return `codec parameter ${shown} is not allowed for ${mimeType} (allowed: ${allowed.join(', ') || 'none'})`;
    }
    const ok = typeof value === 'number' ? Number.isFinite(value) : typeof value === 'string' && VALUE.test(value);
    if (!ok) return `codec parameter ${shown} of ${mimeType} has a value that is not allowed (visible ASCII without ';', at most 1024 characters)`;
  }
  return undefined;
}

/** Checks every codec of an RTP parameters object as a publisher sends it. */
export function rtpParametersProblem(rtpParameters: unknown): string | undefined {
  const codecs = (rtpParameters as { codecs?: unknown } | null)?.codecs;
  if (!Array.isArray(codecs)) return undefined; // mediasoup refuses it with its own message
  for (const [i, c] of codecs.entries()) {
    const codec = c as { mimeType?: unknown; parameters?: unknown } | null;
    const problem = codecParametersProblem(typeof codec?.mimeType === 'string' ? codec.mimeType : '?', codec?.parameters);
    if (problem) return `rtpParameters.codecs[${i}]: ${problem}`;
  }
  return undefined;
}
