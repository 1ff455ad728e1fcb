// Rooms call phones: SipClient.createSipParticipant dials SIPp (Debian's sip-tester) acting as the
// phone on loopback, through an outbound trunk with digest credentials. The answered phone echoes
// what it hears, so a room participant's tone coming back on the SIP participant's track proves
// the media both ways; RemoveParticipant hangs up with BYE, a busy phone is a SipCallError, a phone
// that only rings is CANCELled when the participant is removed; DTMF from the room reaches the
// phone as RFC 4733 events (a raw RTP socket of the test is the phone's media end).
import dgram from 'node:dgram';
import { ParticipantInfo_Kind, SIPTransport } from '@livekit/protocol';
import { RoomServiceClient, SipClient, SipCallError } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RemoteTrack } from '../../src/client/node.ts';
import { NodeParticipant } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { freeUdpPort, runSippPhone, toneOf } from '../helpers/sip.ts';

let redis: TestRedis;
let gw: Gateway;
let sip: SipClient;
let rooms: RoomServiceClient;
const AUTH = { username: 'roomgate', password: 'trunk-secret' };

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_SIP_ENABLED: 'true', ROOMGATE_SIP_PORT: String(await freeUdpPort()) });
  sip = new SipClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
  rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

async function trunkTo(port: number, auth = false) {
  const trunk = await sip.createSipOutboundTrunk(`phone-${port}`, `127.0.0.1:${port}`, ['+15550100'], { transport: SIPTransport.SIP_TRANSPORT_UDP, ...(auth ? { authUsername: AUTH.username, authPassword: AUTH.password } : {}) });
  return trunk.sipTrunkId;
}

const gone = (room: string, identity: string) =>
  waitFor(async () => ((await rooms.listParticipants(room).catch(() => [])).some((p) => p.identity === identity) ? undefined : true), 10_000, `${identity} to leave ${room}`);

describe('dialling out (CreateSIPParticipant)', () => {
  it('calls a phone through a trunk with digest auth; it rings, answers, hears the room (its echo carries a participant\'s tone); RemoveParticipant sends BYE', async () => {
    const phone = await runSippPhone({ answer: 200, ringMs: 300, auth: AUTH });
    const trunk = await trunkTo(phone.port, true);
    const host = await NodeParticipant.connect(gw.url, await joinToken('dial', 'host', { canSubscribe: true, canPublish: true }));
    const statuses: string[] = [];
    const note = (p: Record<string, unknown>) => {
      const status = (p.attributes as Record<string, string> | undefined)?.['sip.callStatus'];
      if (p.identity === 'phone' && status && statuses.at(-1) !== status) statuses.push(status);
    };
    host.on('participantConnected', note);
    host.on('participantUpdated', note);
    try {
      const voice = await host.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
      const info = await phone.during(sip.createSipParticipant(trunk, '+15550123', 'dial', { participantIdentity: 'phone', waitUntilAnswered: true }));
      expect(info).toMatchObject({ participantIdentity: 'phone', roomName: 'dial' });
      expect(info.sipCallId).toMatch(/^SCL_/);
      const [p] = (await rooms.listParticipants('dial')).filter((x) => x.identity === 'phone');
      expect(p?.kind).toBe(ParticipantInfo_Kind.SIP);
      expect(p?.attributes).toMatchObject({ 'sip.callStatus': 'active', 'sip.callID': info.sipCallId, 'sip.phoneNumber': '+15550123', 'sip.trunkID': trunk, 'sip.trunkPhoneNumber': '+15550100' });
      await waitFor(() => (statuses.at(-1) === 'active' ? true : undefined), 10_000, 'callStatus active');
      expect(statuses).toEqual(['dialing', 'ringing', 'active']);

      const track = await waitFor(() => host.remoteTracks.find((t: RemoteTrack) => t.participantIdentity === 'phone' && t.kind === 'audio'), 20_000, 'the phone\'s audio track');
      expect(await toneOf(track, 440, 500)).toBeGreaterThan(0.8);
      await voice.stop();

      await rooms.removeParticipant('dial', 'phone');
      const result = await phone.done;
      expect(result.code, result.output).toBe(0);
    } finally {
      await host.leave();
    }
  });

  it('a busy phone (486) fails the call with a SipCallError and leaves nobody in the room', async () => {
    const phone = await runSippPhone({ answer: 486 });
    const trunk = await trunkTo(phone.port);
    const err: unknown = await sip.createSipParticipant(trunk, '+15550124', 'busy', { participantIdentity: 'busy-phone', waitUntilAnswered: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SipCallError);
    expect((err as SipCallError).sipStatusCode).toBe(486);
    expect((err as SipCallError).code).toBe('resource_exhausted');
    expect((err as SipCallError).message).toMatch(/486 Busy Here/);
    const result = await phone.done;
    expect(result.code, result.output).toBe(0);
    await gone('busy', 'busy-phone');
  });

  it('removing the participant while the phone rings CANCELs the call', async () => {
    const phone = await runSippPhone({ answer: 'ring' });
    const trunk = await trunkTo(phone.port);
    const info = await sip.createSipParticipant(trunk, '+15550125', 'ringing', { participantIdentity: 'ringing-phone' });
    expect(info.participantIdentity).toBe('ringing-phone');
    await phone.during(waitFor(async () => (await rooms.listParticipants('ringing')).find((p) => p.identity === 'ringing-phone' && p.attributes['sip.callStatus'] === 'ringing'), 10_000, 'callStatus ringing'));
    await rooms.removeParticipant('ringing', 'ringing-phone');
    const result = await phone.done;
    expect(result.code, result.output).toBe(0);
  });

  it('sends DTMF to the phone as RFC 4733 events: the request\'s dtmf, then keys a participant sends as sip.dtmf data', async () => {
    const rtp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => rtp.bind(0, '127.0.0.1', resolve));
    // Each key's events share one timestamp; the key counts once its end bit arrives.
    const keys: { code: number; ts: number }[] = [];
    rtp.on('message', (m) => {
      if ((m[1]! & 0x7f) !== 101 || m.length < 16) return;
      const ts = m.readUInt32BE(4);
      if ((m[13]! & 0x80) && !keys.some((k) => k.ts === ts)) keys.push({ code: m[12]!, ts });
    });
    const phone = await runSippPhone({ answer: 200, mediaPort: rtp.address().port });
    const host = await NodeParticipant.connect(gw.url, await joinToken('keys', 'host', { canPublishData: true, canSubscribe: true }));
    try {
      const trunk = await trunkTo(phone.port);
      await phone.during(sip.createSipParticipant(trunk, '+15550126', 'keys', { participantIdentity: 'ivr', waitUntilAnswered: true, dtmf: '5' }));
      await waitFor(() => (keys.length >= 1 ? true : undefined), 10_000, 'the dtmf of the request');
      await host.publishData(new TextEncoder().encode(JSON.stringify({ digits: '1#' })), { topic: 'sip.dtmf', destinations: ['ivr'] });
      await waitFor(() => (keys.length >= 3 ? true : undefined), 10_000, 'three keys at the phone');
      expect(keys.map((k) => k.code)).toEqual([5, 1, 11]);
      await rooms.removeParticipant('keys', 'ivr');
      const result = await phone.done;
      expect(result.code, result.output).toBe(0);
    } finally {
      rtp.close();
      await host.leave();
    }
  });

  it('transfers an answered call with REFER: a target that answers ends the call; one that is busy fails the transfer and the call goes on', async () => {
    const phone = await runSippPhone({ answer: 200, transfer: { referTo: 'sip:desk@pbx\\.test', status: 200 } });
    const trunk = await trunkTo(phone.port);
    await phone.during(sip.createSipParticipant(trunk, '+15550127', 'xfer', { participantIdentity: 'caller', waitUntilAnswered: true }));
    await phone.during(sip.transferSipParticipant('xfer', 'caller', 'sip:desk@pbx.test'));
    const result = await phone.done;
    expect(result.code, result.output).toBe(0);
    await gone('xfer', 'caller');

    const busy = await runSippPhone({ answer: 200, transfer: { referTo: 'tel:\\+15550999', status: 486 } });
    const trunk2 = await trunkTo(busy.port);
    await busy.during(sip.createSipParticipant(trunk2, '+15550128', 'xfer2', { participantIdentity: 'caller2', waitUntilAnswered: true }));
    const err: unknown = await busy.during(sip.transferSipParticipant('xfer2', 'caller2', '+15550999').catch((e: unknown) => e));
    expect(err).toBeInstanceOf(SipCallError);
    expect((err as SipCallError).sipStatusCode).toBe(486);
    expect((await rooms.listParticipants('xfer2')).map((p) => p.identity)).toContain('caller2');
    await rooms.removeParticipant('xfer2', 'caller2');
    const r2 = await busy.done;
    expect(r2.code, r2.output).toBe(0);
  });
});
