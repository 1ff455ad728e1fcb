// SIP message syntax, digest authentication and the call's SDP offer/answer (src/sip/*): what real
// clients send (SIPp's and baresip's INVITE shapes, compact headers, folding), and a fuzz pass
// that mutates valid messages: the parser returns a message or undefined, it never throws.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DigestAuth, digestAnswer, parseDigest } from '../../src/sip/digest.ts';
import { header, parseCSeq, parseMessage, parseNameAddr, parseUri, responseTo, serializeMessage, topViaBranch, type SipRequest } from '../../src/sip/message.ts';
import { readOffer, writeAnswer } from '../../src/sip/sdp.ts';

const SDP = [
  'v=0', 'o=user1 53655765 2353687637 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
  'm=audio 6000 RTP/AVP 96 8 0 101', 'a=rtpmap:96 opus/48000/2', 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:101 telephone-event/8000', 'a=fmtp:101 0-16', '',
].join('\r\n');

const INVITE = [
  'INVITE sip:+15550100@127.0.0.1:5070 SIP/2.0',
  'Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0',
  'f: "Alice" <sip:+15550111@127.0.0.1:5061>;tag=abc',
  't: <sip:+15550100@127.0.0.1:5070>',
  'i: 1-42@127.0.0.1',
  'CSeq: 1 INVITE',
  'Contact: <sip:alice@127.0.0.1:5061>',
  'Subject: folded',
  '  over two lines',
  'Max-Forwards: 70',
  'c: application/sdp',
  `l: ${Buffer.byteLength(SDP)}`,
  '',
  SDP,
].join('\r\n');

describe('SIP messages', () => {
  it('parses a request with compact and folded headers and its body by Content-Length', () => {
    const msg = parseMessage(`${INVITE}trailing garbage`);
    expect(msg?.kind).toBe('request');
    const req = msg as SipRequest;
    expect(req.method).toBe('INVITE');
    expect(req.uri).toBe('sip:+15550100@127.0.0.1:5070');
    expect(header(req, 'call-id')).toBe('1-42@127.0.0.1');
    expect(header(req, 'Subject')).toBe('folded over two lines');
    expect(req.body).toBe(SDP);
    expect(topViaBranch(req)).toBe('z9hG4bK-1-0');
    expect(parseCSeq(req)).toEqual({ seq: 1, method: 'INVITE' });
    const from = parseNameAddr(header(req, 'From'));
    expect(from?.display).toBe('Alice');
    expect(from?.params.get('tag')).toBe('abc');
    expect(parseUri(from!.uri)).toEqual({ user: '+15550111', host: '127.0.0.1', port: 5061 });
  });

  it('writes a response that copies the dialog headers, adds our tag and round-trips', () => {
    const req = parseMessage(INVITE) as SipRequest;
    const res = responseTo(req, 200, 'OK', { toTag: 'rg1', headers: [['Content-Type', 'application/sdp']], body: 'v=0\r\n' });
    const text = serializeMessage(res);
    expect(text.startsWith('SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n')).toBe(true);
    const back = parseMessage(text);
    expect(back?.kind === 'response' && back.status).toBe(200);
    expect(parseNameAddr(header(back!, 'To'))?.params.get('tag')).toBe('rg1');
    expect(header(back!, 'Content-Length')).toBe('5');
    expect(back?.body).toBe('v=0\r\n');
  });

  it('refuses what is not a SIP message', () => {
    for (const bad of ['', 'hello', 'INVITE sip:a SIP/2.0\r\n', 'INVITE sip:a SIP/2.0\r\nVia x\r\n\r\n', 'GET / HTTP/1.1\r\n\r\n',
      `INVITE sip:a SIP/2.0\r\nContent-Length: 50\r\n\r\nshort`, 'SIP/2.0 99 Nope\r\n\r\n', ' folded\r\n\r\n', 'x'.repeat(70_000)]) {
      expect(parseMessage(bad), JSON.stringify(bad.slice(0, 40))).toBeUndefined();
    }
  });

  it('never throws on mutated messages (fuzz)', () => {
    const seeds = [Buffer.from(INVITE), Buffer.from(serializeMessage(responseTo(parseMessage(INVITE) as SipRequest, 401, 'Unauthorized')))];
    let seen = 0;
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(seeds[i % seeds.length]!);
      const edits = 1 + (i % 8);
      for (let e = 0; e < edits; e++) {
        const at = randomBytes(2).readUInt16BE() % b.length;
        b[at] = [0x0d, 0x0a, 0x3a, 0x3b, 0x3c, 0x22, 0x20, randomBytes(1)[0]!][i % 8]!;
      }
      const cut = i % 3 === 0 ? b.subarray(0, randomBytes(2).readUInt16BE() % b.length) : b;
      const msg = parseMessage(cut);
      if (msg) {
        seen++;
        // Everything a handler reads off a message must not throw either.
        parseCSeq(msg);
        topViaBranch(msg);
        const addr = parseNameAddr(header(msg, 'From'));
        if (addr) parseUri(addr.uri);
        readOffer(msg.body);
        parseDigest(header(msg, 'Authorization'));
        if (msg.kind === 'request') serializeMessage(responseTo(msg, 400, 'Bad Request', { toTag: 'x' }));
      }
    }
    expect(seen).toBeGreaterThan(100);
  });
});

describe('SIP digest authentication', () => {
  const auth = new DigestAuth('roomgate');
  const creds = { username: 'trunk', password: 's3cret' };

  it('accepts the answer of a client that knows the password, with and without qop', () => {
    const challenge = auth.challenge();
    expect(auth.verify(digestAnswer(challenge, { method: 'INVITE', uri: 'sip:1@h', ...creds }), 'INVITE', creds)).toBe('ok');
    // RFC 2069 style (no qop), as some older clients answer.
    const nonce = /nonce="([^"]+)"/.exec(challenge)![1]!;
    const md5 = (s: string) => createHash('md5').update(s).digest('hex');
    const response = md5(`${md5('trunk:roomgate:s3cret')}:${nonce}:${md5('INVITE:sip:1@h')}`);
    expect(auth.verify(`Digest username="trunk", realm="roomgate", nonce="${nonce}", uri="sip:1@h", response="${response}"`, 'INVITE', creds)).toBe('ok');
  });

  it('refuses a wrong password, a foreign nonce and answers to another method; an old nonce is stale', () => {
    const challenge = auth.challenge();
    expect(auth.verify(digestAnswer(challenge, { method: 'INVITE', uri: 'sip:1@h', username: 'trunk', password: 'nope' }), 'INVITE', creds)).toBe('bad');
    expect(auth.verify(digestAnswer(new DigestAuth('roomgate').challenge(), { method: 'INVITE', uri: 'sip:1@h', ...creds }), 'INVITE', creds)).toBe('bad');
    expect(auth.verify(digestAnswer(challenge, { method: 'BYE', uri: 'sip:1@h', ...creds }), 'INVITE', creds)).toBe('bad');
    expect(auth.verify(undefined, 'INVITE', creds)).toBe('bad');
    const old = auth.challenge(Date.now() - 10 * 60_000);
    expect(auth.verify(digestAnswer(old, { method: 'INVITE', uri: 'sip:1@h', ...creds }), 'INVITE', creds)).toBe('stale');
  });
});

describe('call SDP', () => {
  it('answers the first G.711 codec of the offer with telephone-event', () => {
    const offer = readOffer(SDP);
    expect(offer).toEqual({ address: '127.0.0.1', port: 6000, codec: 'PCMA', payloadType: 8, dtmfPayloadType: 101 });
    const answer = readOffer(writeAnswer(offer!, { address: '127.0.0.1', port: 7000, sessionId: 1 }));
    expect(answer).toEqual({ address: '127.0.0.1', port: 7000, codec: 'PCMA', payloadType: 8, dtmfPayloadType: 101 });
  });

  it('has nothing to answer to an offer without G.711', () => {
    expect(readOffer(SDP.replace('96 8 0 101', '96 101'))).toBeUndefined();
    expect(readOffer('not sdp')).toBeUndefined();
  });
});
