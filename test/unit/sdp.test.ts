// The SDP module alone: offers from real clients map to mediasoup parameters, the answer parses back,
// and 3000 mutated offers only ever raise SdpError (a 422), never anything else.
import sdpTransform from 'sdp-transform';
import { describe, expect, it } from 'vitest';
import { ROUTER_MEDIA_CODECS } from '../../src/media/codecs.ts';
import { SdpError, negotiatePublish, parseOffer, parseSdpFrag, writeAnswer } from '../../src/media/sdp.ts';
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
