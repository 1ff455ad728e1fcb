// The SDP module alone: offers from real clients map to mediasoup parameters, the answer parses back,
// and 3000 mutated offers only ever raise SdpError (a 422), never anything else.
import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import { codecParametersProblem, ROUTER_MEDIA_CODECS } from '../../src/media/codecs.ts';
import { SdpError, negotiatePublish, parseOffer, parseSdpFrag, writeAnswer, writeRtpInputSdp } from '../../src/media/sdp.ts';
import { chromeWhipOffer, mutate } from '../fixtures/sdp.ts';

const transport = {
  iceUfrag: 'srvufrag',
  icePwd: 'srvpassword0123456789',
  candidates: [{ foundation: 'udpcandidate', priority: 1076302079, ip: '127.0.0.1', protocol: 'udp' as const, port: 40001, type: 'host' }],
  fingerprints: [{ algorithm: 'sha-256', value: 'AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89' }],
};

describe('SDP ↔ mediasoup', () => {
  it('maps a Chromium offer to Producers (opus; VP8 + RTX with the FID SSRC) and answers recvonly, ICE-lite, passive', () => {
    const offer = parseOffer(chromeWhipOffer());
    const plan = negotiatePublish(offer, ROUTER_MEDIA_CODECS);
    expect(plan.map((m) => [m.kind, m.rtpParameters.codecs.map((c) => `${c.mimeType}/${c.payloadType}`)])).toEqual([
      ['audio', ['audio/opus/111']],
      ['video', ['video/VP8/96', 'video/rtx/97']],
    ]);
    expect(plan[1]!.rtpParameters.encodings).toEqual([{ ssrc: 2002, rtx: { ssrc: 2003 } }]);
    expect(plan[1]!.rtpParameters.headerExtensions!.map((h) => h.uri)).toContain('urn:ietf:params:rtp-hdrext:sdes:mid');
    const answer = sdpTransform.parse(writeAnswer(offer, plan.map((m) => m.answer), transport, '1'));
    expect(answer.icelite).toBe('ice-lite');
    expect(answer.media.map((m) => [m.mid, m.direction, m.setup, m.rtp.map((r) => r.payload)])).toEqual([
      [0, 'recvonly', 'passive', [111]],
      [1, 'recvonly', 'passive', [96, 97]],
    ]);
    expect(answer.media[1]!.candidates![0]!.port).toBe(40001);
  });

  it('takes simulcast RIDs as encodings and answers a=simulcast:recv', () => {
    const text = chromeWhipOffer()
      .replace(/a=ssrc(-group)?:.*\r\n/g, '')
      .replace('a=rtcp-rsize\r\na=rtpmap:96', 'a=rtcp-rsize\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\na=rtpmap:96');
    const offer = parseOffer(text);
    const plan = negotiatePublish(offer, ROUTER_MEDIA_CODECS);
    expect(plan[1]!.rtpParameters.encodings).toEqual([{ rid: 'q' }, { rid: 'h' }, { rid: 'f' }]);
    expect(writeAnswer(offer, plan.map((m) => m.answer), transport, '1')).toContain('a=simulcast:recv q;h;f');
  });

  it('reads trickle and restart sdpfrags', () => {
    expect(parseSdpFrag('a=ice-ufrag:u1\r\na=ice-pwd:p1\r\na=candidate:1 1 UDP 1 1.2.3.4 5 typ host\r\n')).toEqual({ iceUfrag: 'u1', icePwd: 'p1', candidates: 1 });
    expect(() => parseSdpFrag('a=ice-ufrag:u1\r\n')).toThrow(SdpError);
    expect(() => parseSdpFrag('nonsense')).toThrow(SdpError);
  });

  it('3000 mutated offers raise SdpError or negotiate; the answer of any that negotiates parses', () => {
    const base = chromeWhipOffer();
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      const text = mutate(base, 10_000 + i);
      try {
        const offer = parseOffer(text);
        const plan = negotiatePublish(offer, ROUTER_MEDIA_CODECS);
        sdpTransform.parse(writeAnswer(offer, plan.map((m) => m.answer), transport, '1'));
        accepted++;
      } catch (err) {
        if (!(err instanceof SdpError)) throw new Error(`mutation ${10_000 + i} threw ${String(err)}\n${text}`);
      }
    }
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(3000);
  });
});

describe('codec parameters (SDP injection)', () => {
  const opus = { kind: 'audio' as const, port: 50000, rtcpPort: 50001, payloadType: 111, mimeType: 'audio/opus', clockRate: 48000, channels: 2 };

  it('writeRtpInputSdp refuses a value holding a line break (an injected m-line)', () => {
    const evil = { ...opus, parameters: { useinbandfec: '1\r\nm=audio 45000 RTP/AVP 0' } };
    expect(() => writeRtpInputSdp([evil])).toThrow(SdpError);
    expect(() => writeRtpInputSdp([{ ...opus, parameters: { useinbandfec: '1;minptime=1' } }])).toThrow(/not allowed/);
    expect(() => writeRtpInputSdp([{ ...opus, parameters: { 'a=b': 1 } }])).toThrow(/not a valid fmtp name/);
    expect(() => writeRtpInputSdp([{ ...opus, parameters: { 'k\n': 1 } }])).toThrow(SdpError);
  });

  it('writeRtpInputSdp writes plain parameters, base64 and lists included, one m-line per stream', () => {
    const h264 = { kind: 'video' as const, port: 50002, rtcpPort: 50003, payloadType: 102, mimeType: 'video/H264', clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'sprop-parameter-sets': 'Z0IAH5WoFAFuQA==,aM48gA==' } };
    const sdp = writeRtpInputSdp([{ ...opus, parameters: { minptime: 10, useinbandfec: 1 } }, h264]);
    expect(sdp).toContain('a=fmtp:111 minptime=10;useinbandfec=1\r\n');
    expect(sdp).toContain('a=fmtp:102 packetization-mode=1;profile-level-id=42e01f;sprop-parameter-sets=Z0IAH5WoFAFuQA==,aM48gA==\r\n');
    expect(sdpTransform.parse(sdp).media.map((m) => m.port)).toEqual([50000, 50002]);
  });

  it('allows per codec only the known fmtp keys, with plain values', () => {
    expect(codecParametersProblem('audio/opus', { minptime: 10, useinbandfec: 1, stereo: 1, 'sprop-stereo': 1 })).toBeUndefined();
    expect(codecParametersProblem('video/VP8', { 'x-google-start-bitrate': 1000, 'max-fr': 60 })).toBeUndefined();
    expect(codecParametersProblem('video/rtx', { apt: 96 })).toBeUndefined();
    expect(codecParametersProblem('audio/opus', { 'profile-level-id': '42e01f' })).toMatch(/"profile-level-id" is not allowed for audio\/opus/);
    expect(codecParametersProblem('audio/opus', { 'x-google-start-bitrate': 1 })).toMatch(/not allowed/);
    expect(codecParametersProblem('audio/opus', { useinbandfec: '1\nm=audio 1 RTP/AVP 0' })).toMatch(/value that is not allowed/);
    expect(codecParametersProblem('audio/opus', { useinbandfec: 'a b' })).toMatch(/value that is not allowed/);
    expect(codecParametersProblem('audio/opus', { 'use=inbandfec': 1 })).toMatch(/not a valid fmtp name/);
    expect(codecParametersProblem('audio/opus', { minptime: Number.NaN })).toMatch(/value that is not allowed/);
  });

  it('a WHIP offer with an unknown fmtp key on its chosen codec is refused (SdpError, a 422)', () => {
    const offer = chromeWhipOffer().replace('a=fmtp:111 minptime=10;useinbandfec=1', 'a=fmtp:111 minptime=10;useinbandfec=1;evil=m');
    expect(() => negotiatePublish(parseOffer(offer), ROUTER_MEDIA_CODECS)).toThrow(/m-line 0 \(audio\): codec parameter "evil" is not allowed for audio\/opus/);
  });
});
