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
