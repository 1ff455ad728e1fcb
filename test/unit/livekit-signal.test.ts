// The pure parts of LiveKit client signaling: protobuf requests, join responses, add_track checks,
// DataPackets and DCEP, and the SDP a two-PeerConnection client exchanges.
import {
  AddTrackRequest,
  ConnectionQuality,
  DataPacket,
  DataPacket_Kind,
  JoinResponse,
  ParticipantInfo,
  Room,
  SessionDescription,
  SignalRequest,
  SignalResponse,
  SimulcastCodec,
  SpeakerInfo,
  TrackInfo,
  TrackSource,
  TrackType,
  UserPacket,
  VideoLayer,
  VideoQuality,
} from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { dcepOpen, kindFromSequence, readDataPacket, writeDataPacket } from '../../src/livekit/data.ts';
import {
  connectionQuality,
  decodeRequest,
  encodeResponse,
  isLiveKitUpgrade,
  joinResponse,
  pendingTrack,
  preferredLayer,
  speakers,
  tokenFrom,
} from '../../src/livekit/signal.ts';
import { consumerAnswerMedia, negotiateSendMedia, parseAnswer, parseOffer, writeDescription } from '../../src/media/sdp.ts';
import { ROUTER_MEDIA_CODECS } from '../../src/media/codecs.ts';

const FP = 'sha-256 5A:1F:0B:6C:22:0E:91:3B:7D:AF:25:8C:61:E4:02:97:C3:11:5B:88:0D:F2:6E:41:A9:3C:74:D0:B8:25:9E:16';

/** A publisher offer shaped like livekit-client 2.x in Chromium: RED first for audio, VP8 simulcast q/h/f, AV1, data. */
function publisherOffer(): string {
  const common = ['c=IN IP4 0.0.0.0', 'a=ice-ufrag:Ab12', 'a=ice-pwd:hQ3lJYk0wC4gkWm1nL3x2B7a', `a=fingerprint:${FP}`, 'a=setup:actpass'];
  return [
    'v=0',
    'o=- 1 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=group:BUNDLE 0 1 2',
    'a=msid-semantic: WMS *',
    'm=audio 9 UDP/TLS/RTP/SAVPF 63 111',
    ...common,
    'a=mid:0',
    'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=sendonly',
    'a=msid:stream-a mic-cid',
    'a=rtcp-mux',
    'a=rtpmap:63 red/48000/2',
    'a=fmtp:63 111/111',
    'a=rtpmap:111 opus/48000/2',
    'a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1',
    'a=ssrc:1001 cname:c',
    'm=video 9 UDP/TLS/RTP/SAVPF 96 97 45 46',
    ...common,
    'a=mid:1',
    'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
    'a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id',
    'a=extmap:8 https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension',
    'a=sendonly',
    'a=msid:stream-v cam-cid',
    'a=rtcp-mux',
    'a=rtpmap:96 VP8/90000',
    'a=rtcp-fb:96 transport-cc',
    'a=rtcp-fb:96 nack',
    'a=rtcp-fb:96 nack pli',
    'a=rtpmap:97 rtx/90000',
    'a=fmtp:97 apt=96',
    'a=rtpmap:45 AV1/90000',
    'a=rtpmap:46 rtx/90000',
    'a=fmtp:46 apt=45',
    'a=rid:q send',
    'a=rid:h send',
    'a=rid:f send',
    'a=simulcast:send q;h;f',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
    ...common,
    'a=mid:2',
    'a=sctp-port:5000',
    'a=max-message-size:262144',
    '',
  ].join('\r\n');
}

const LOCAL = {
  iceUfrag: 'srvufrag',
  icePwd: 'srvpasswordsrvpassword',
  candidates: [{ foundation: 'udpcandidate', priority: 1076302079, ip: '127.0.0.1', protocol: 'udp' as const, port: 40000, type: 'host' }],
  fingerprints: [{ algorithm: 'sha-256', value: 'AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99' }],
};

describe('LiveKit signal frames', () => {
  it('decodes a binary SignalRequest and refuses text, garbage and empty messages with a reason', () => {
    const bytes = new SignalRequest({ message: { case: 'offer', value: new SessionDescription({ type: 'offer', sdp: 'v=0', id: 3 }) } }).toBinary();
    const msg = decodeRequest(Buffer.from(bytes), true);
    expect(msg.case).toBe('offer');
    expect(() => decodeRequest(Buffer.from('{"offer":{}}'), false)).toThrow(/binary protobuf/);
    expect(() => decodeRequest(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), true)).toThrow(/not a valid SignalRequest/);
    // Field 99 (unknown to this server) decodes as an empty oneof.
    expect(() => decodeRequest(Buffer.from([0x98, 0x06, 0x01]), true)).toThrow(/no known message/);
  });

  it('tells LiveKit upgrades from roomgate ones and reads the token from the query or a Bearer header', () => {
    expect(isLiveKitUpgrade(new URL('http://g/rtc?access_token=x&sdk=js&protocol=17'), undefined)).toBe(true);
    expect(isLiveKitUpgrade(new URL('http://g/rtc?access_token=x'), undefined)).toBe(false);
    expect(isLiveKitUpgrade(new URL('http://g/rtc'), 'Bearer abc')).toBe(true);
    expect(tokenFrom(new URL('http://g/rtc'), 'Bearer abc')).toBe('abc');
    expect(tokenFrom(new URL('http://g/rtc?access_token=q'), 'Bearer abc')).toBe('q');
  });

  it('writes a join response every SDK accepts: participant, pings 5/15 s, subscriber primary, publish codecs', () => {
    const bytes = encodeResponse({
      case: 'join',
      value: joinResponse({
        room: new Room({ name: 'r', sid: 'RM_1' }),
        participant: new ParticipantInfo({ sid: 'PA_1', identity: 'a' }),
        others: [new ParticipantInfo({ sid: 'PA_2', identity: 'b' })],
        iceServers: [{ urls: ['stun:127.0.0.1:3478'] }],
        nodeId: 'n1',
      }),
    });
    const res = SignalResponse.fromBinary(bytes);
    expect(res.message.case).toBe('join');
    const join = res.message.value as JoinResponse;
    expect(join.participant?.identity).toBe('a');
    expect(join.otherParticipants.map((p) => p.identity)).toEqual(['b']);
    expect([join.pingInterval, join.pingTimeout]).toEqual([5, 15]);
    expect(join.subscriberPrimary).toBe(true);
    expect(join.enabledPublishCodecs.map((c) => c.mime)).toEqual(['audio/opus', 'video/VP8', 'video/H264']);
    expect(join.iceServers[0]?.urls).toEqual(['stun:127.0.0.1:3478']);
  });
});

describe('add_track', () => {
  it('keeps cid, kind, source and simulcast layers', () => {
    const layers = [new VideoLayer({ quality: VideoQuality.LOW, width: 320, height: 180 }), new VideoLayer({ quality: VideoQuality.HIGH, width: 1280, height: 720 })];
    const t = pendingTrack(new AddTrackRequest({ cid: 'cam', type: TrackType.VIDEO, source: TrackSource.CAMERA, width: 1280, height: 720, layers, simulcastCodecs: [new SimulcastCodec({ codec: 'vp8', cid: 'cam' })] }));
    expect(t).toMatchObject({ cid: 'cam', kind: 'video', source: 'camera', width: 1280, height: 720 });
    expect(t.layers.map((l) => l.width)).toEqual([320, 1280]);
    expect(pendingTrack(new AddTrackRequest({ cid: 'm', type: TrackType.AUDIO })).source).toBe('microphone');
  });

  it('refuses codecs the rooms cannot carry, data tracks and a missing cid, naming the problem', () => {
    expect(() => pendingTrack(new AddTrackRequest({ cid: 'c', type: TrackType.VIDEO, simulcastCodecs: [new SimulcastCodec({ codec: 'av1', cid: 'c' })] }))).toThrow(/codec 'av1' is not supported for video/);
    expect(() => pendingTrack(new AddTrackRequest({ cid: 'c', type: TrackType.DATA }))).toThrow(/audio or video only/);
    expect(() => pendingTrack(new AddTrackRequest({ type: TrackType.AUDIO }))).toThrow(/cid is required/);
  });
});

describe('speakers and layers', () => {
  it('reports who stopped speaking as inactive', () => {
    const out = speakers([{ identity: 'a', sid: 'PA_a', level: 0.5 }], [{ identity: 'b', sid: 'PA_b', level: 0.4 }]);
    expect(out.map((s: SpeakerInfo) => [s.sid, s.active])).toEqual([['PA_a', true], ['PA_b', false]]);
  });

  it('picks the simulcast layer by size, else by quality', () => {
    const track = new TrackInfo({
      layers: [
        new VideoLayer({ quality: VideoQuality.LOW, width: 320, height: 180 }),
        new VideoLayer({ quality: VideoQuality.MEDIUM, width: 640, height: 360 }),
        new VideoLayer({ quality: VideoQuality.HIGH, width: 1280, height: 720 }),
      ],
    });
    expect(preferredLayer({ quality: VideoQuality.HIGH, width: 300, height: 170 }, track, 3)).toBe(0);
    expect(preferredLayer({ quality: VideoQuality.HIGH, width: 600, height: 340 }, track, 3)).toBe(1);
    expect(preferredLayer({ quality: VideoQuality.LOW, width: 0, height: 0 }, track, 3)).toBe(0);
    expect(preferredLayer({ quality: VideoQuality.HIGH, width: 0, height: 0 }, track, 2)).toBe(1);
  });
});

describe('LiveKit data packets', () => {
  it('reads a user packet with topic, destinations and reliability', () => {
    const bytes = new DataPacket({
      kind: DataPacket_Kind.LOSSY,
      destinationIdentities: ['bob'],
      value: { case: 'user', value: new UserPacket({ payload: new Uint8Array([1, 2]), topic: 'chat' }) },
    }).toBinary();
    const read = readDataPacket(bytes)!;
    expect(read).toMatchObject({ topic: 'chat', destinations: ['bob'], reliable: false });
    expect([...read.payload!]).toEqual([1, 2]);
    expect(readDataPacket(new Uint8Array([0xff, 0xff, 0xff]))).toBeUndefined();
    expect(readDataPacket(new DataPacket({ value: { case: 'speaker', value: {} as never } }).toBinary())).toBeUndefined();
  });

  it('tells reliable from lossy by sequence for Rust-based SDKs, whose kind field is inverted', () => {
    expect(kindFromSequence('node')).toBe(true);
    expect(kindFromSequence('python')).toBe(true);
    expect(kindFromSequence('js')).toBe(false);
    expect(kindFromSequence(null)).toBe(false);
    const user = { case: 'user' as const, value: new UserPacket({ payload: new Uint8Array([1]) }) };
    // rtc-node 0.13.35: reliable goes out as kind 1 (LOSSY) with a sequence, lossy as kind 0 without one.
    const reliable = new DataPacket({ kind: DataPacket_Kind.LOSSY, sequence: 1, value: user }).toBinary();
    const lossy = new DataPacket({ kind: DataPacket_Kind.RELIABLE, sequence: 0, value: user }).toBinary();
    expect(readDataPacket(reliable, true)?.reliable).toBe(true);
    expect(readDataPacket(lossy, true)?.reliable).toBe(false);
    // Forwarded, the kind field says what the relay decided.
    expect(DataPacket.fromBinary(writeDataPacket({ from: 'a', reliable: true, packet: reliable })).kind).toBe(DataPacket_Kind.RELIABLE);
  });

  it('stamps the sender on what it forwards and clears destinations; builds user packets for roomgate senders', () => {
    const sent = new DataPacket({
      participantIdentity: 'mallory',
      destinationIdentities: ['bob'],
      value: { case: 'user', value: new UserPacket({ payload: new Uint8Array([7]), topic: 't', participantIdentity: 'mallory' }) },
    }).toBinary();
    const out = DataPacket.fromBinary(writeDataPacket({ from: 'alice', fromSid: 'PA_a', reliable: true, packet: sent }));
    expect(out.participantIdentity).toBe('alice');
    expect(out.destinationIdentities).toEqual([]);
    expect(out.value.case === 'user' && out.value.value.participantIdentity).toBe('alice');
    const built = DataPacket.fromBinary(writeDataPacket({ payload: new Uint8Array([9]), topic: 'x', reliable: false }));
    expect(built.kind).toBe(DataPacket_Kind.LOSSY);
    expect(built.value.case === 'user' && [...built.value.value.payload]).toEqual([9]);
    expect(built.value.case === 'user' && built.value.value.topic).toBe('x');
  });

  it('builds DATA_CHANNEL_OPEN per RFC 8832', () => {
    const open = dcepOpen('_lossy', { ordered: false, maxRetransmits: 0 });
    expect(open[0]).toBe(0x03);
    expect(open[1]).toBe(0x81); // unordered, partial reliability by retransmissions
    expect(open.readUInt32BE(4)).toBe(0);
    expect(open.readUInt16BE(8)).toBe(6);
    expect(open.subarray(12).toString()).toBe('_lossy');
    expect(dcepOpen('_reliable', { ordered: true })[1]).toBe(0x00);
  });
});

describe('two-PeerConnection SDP', () => {
  it('reads a publisher offer with data, msid track ids and simulcast RIDs; answers without RED, AV1 or the dependency descriptor', () => {
    const offer = parseOffer(publisherOffer(), { allowData: true, maxMedia: 32 });
    expect(offer.data).toEqual({ index: 2, mid: '2' });
    expect(offer.media.map((m) => [m.mid, m.trackId])).toEqual([['0', 'mic-cid'], ['1', 'cam-cid']]);
    const audio = negotiateSendMedia(offer.media[0]!, ROUTER_MEDIA_CODECS);
    expect(audio.rtpParameters.codecs.map((c) => c.mimeType)).toEqual(['audio/opus']);
    const video = negotiateSendMedia(offer.media[1]!, ROUTER_MEDIA_CODECS);
    expect(video.rtpParameters.codecs.map((c) => c.mimeType)).toEqual(['video/VP8', 'video/rtx']);
    expect(video.rtpParameters.encodings?.map((e) => e.rid)).toEqual(['q', 'h', 'f']);
    const sdp = writeDescription(
      'answer',
      [{ type: 'rtp', media: audio.answer }, { type: 'rtp', media: video.answer }, { type: 'data', mid: '2', sctp: { port: 5000, maxMessageSize: 262144 } }],
      LOCAL,
      '1',
    );
    expect(sdp).not.toMatch(/AV1|red\/48000|dependency-descriptor/);
    expect(sdp).toMatch(/a=simulcast:recv q;h;f/);
    expect(sdp).toMatch(/m=application \d+ UDP\/DTLS\/SCTP webrtc-datachannel[\s\S]*a=sctp-port:5000/);
    expect(sdp).toMatch(/a=setup:passive/);
    expect(sdp).toMatch(/a=group:BUNDLE 0 1 2/);
    expect(() => parseOffer(publisherOffer())).toThrow(/application.*not supported/);
  });

  it('writes a subscriber offer whose msid names the publisher and track, and reads the answer\'s DTLS role', () => {
    const media = consumerAnswerMedia(
      '0',
      'video',
      {
        mid: '0',
        codecs: [
          { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000, parameters: {}, rtcpFeedback: [{ type: 'nack', parameter: '' }] },
          { mimeType: 'video/rtx', payloadType: 102, clockRate: 90000, parameters: { apt: 101 }, rtcpFeedback: [] },
        ],
        headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 1 }],
        encodings: [{ ssrc: 1234, rtx: { ssrc: 5678 } }],
        rtcp: { cname: 'c' },
      },
      'PA_pub|TR_track',
      'TR_track',
    );
    const sdp = writeDescription('offer', [{ type: 'data', mid: 'dc', sctp: { port: 5000, maxMessageSize: 262144 } }, { type: 'rtp', media }], LOCAL, '1', 2);
    expect(sdp).toContain('a=msid:PA_pub|TR_track TR_track');
    expect(sdp).toContain('a=setup:actpass');
    expect(sdp).toContain('a=group:BUNDLE dc 0');
    expect(sdp).toContain('a=ssrc-group:FID 1234 5678');
    const answer = parseAnswer(sdp.replace(/a=setup:actpass/g, 'a=setup:active'));
    expect(answer.setup).toBe('active');
    expect(answer.acceptedMids).toEqual(['dc', '0']);
    expect(() => parseAnswer('hello')).toThrow(/not SDP/);
  });
});

describe('connection quality', () => {
  it('rates the worst published stream by its best encoding, and nothing published as excellent', () => {
    expect(connectionQuality('PA_1', [])).toMatchObject({ participantSid: 'PA_1', quality: ConnectionQuality.EXCELLENT, score: 5 });
    expect(connectionQuality('PA_1', [[10], [3, 9, 10]]).quality).toBe(ConnectionQuality.EXCELLENT);
    expect(connectionQuality('PA_1', [[10], [6]]).quality).toBe(ConnectionQuality.GOOD);
    expect(connectionQuality('PA_1', [[2], [10]])).toMatchObject({ quality: ConnectionQuality.POOR });
    // A stream without scores yet (no RTP seen) is not judged.
    expect(connectionQuality('PA_1', [[], [9]]).quality).toBe(ConnectionQuality.EXCELLENT);
  });
});
