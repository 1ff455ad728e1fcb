// Phone calls into rooms: SIPp (Debian's sip-tester) dials the gateway's SIP port on loopback with
// trunks and dispatch rules made by the real SipClient. The caller lands in the room as a SIP
// participant, a Node participant decodes its audio and finds the caller's tone; a wrong password
// gets 403, an unknown number 404; BYE ends the call from either side.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { ParticipantInfo_Kind } from '@livekit/protocol';
import { AccessToken, RoomServiceClient, SipClient } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RemoteTrack } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { NodeParticipant } from '../../src/client/node.ts';
import { scaled } from '../helpers/deadline.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { runBaresip } from '../helpers/baresip.ts';
import { freeUdpPort, muLawTone, runSipp, sendDtmf, toneOf } from '../helpers/sip.ts';

let redis: TestRedis;
let gw: Gateway;
let sip: SipClient;
let rooms: RoomServiceClient;
const AUTH = { username: 'pbx', password: 'correct-horse' };
const PHONE = '+15550111';

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

async function sipParticipant(room: string, identity?: string) {
  return waitFor(async () => {
    const list = await rooms.listParticipants(room).catch(() => []);
    return list.find((p) => p.kind === ParticipantInfo_Kind.SIP && (!identity || p.identity === identity));
  }, 20_000, `the SIP participant ${identity ?? ''} in ${room}`);
}

describe('SIP API', () => {
  it('keeps trunks and dispatch rules made by SipClient; a token without sip.admin is refused', async () => {
    const trunk = await sip.createSipInboundTrunk('office', ['+15550100'], { authUsername: AUTH.username, authPassword: AUTH.password });
    expect(trunk.sipTrunkId).toMatch(/^ST_/);
    const open = await sip.createSipInboundTrunk('lobby', ['+15550200'], { allowedAddresses: ['127.0.0.0/8'] });
    const rule = await sip.createSipDispatchRule({ type: 'individual', roomPrefix: 'call' }, { trunkIds: [trunk.sipTrunkId], name: 'per caller' });
    expect(rule.sipDispatchRuleId).toMatch(/^SDR_/);
    await sip.createSipDispatchRule({ type: 'direct', roomName: 'lobby' }, { trunkIds: [open.sipTrunkId], attributes: { desk: 'front' } });
    expect((await sip.listSipInboundTrunk()).map((t) => t.name).sort()).toEqual(['lobby', 'office']);
    expect((await sip.listSipDispatchRule()).length).toBe(2);
    // A second rule for the same trunk and callers would make routing ambiguous.
    await expect(sip.createSipDispatchRule({ type: 'direct', roomName: 'x' }, { trunkIds: [open.sipTrunkId] })).rejects.toThrow(/already covers/);

    const at = new AccessToken(API_KEY, API_SECRET, { identity: 'ops' });
    at.addGrant({ roomAdmin: true, roomList: true });
    const res = await fetch(`${gw.url}/twirp/livekit.SIP/ListSIPInboundTrunk`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await at.toJwt()}`, 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { code: string }).code).toBe('permission_denied');
    await expect(sip.createSipParticipant('ST_x', '+15550999', 'room')).rejects.toThrow(/outbound trunk 'ST_x' does not exist/);
  });
});

describe('inbound calls (SIPp)', () => {
  it('refuses an unknown number with 404 and a wrong password with 403', async () => {
    const unknown = await runSipp(gw.sipPort, { called: '+15550999', caller: PHONE, expect: 404 });
    const wrong = await runSipp(gw.sipPort, { called: '+15550100', caller: PHONE, auth: { ...AUTH, password: 'nope' }, expect: 403 });
    const [u, w] = await Promise.all([unknown.done, wrong.done]);
    expect(u.code, u.output).toBe(0);
    expect(w.code, w.output).toBe(0);
  });

  it('answers 486 Busy Here when the rule\'s room is full', async () => {
    const trunk = await sip.createSipInboundTrunk('desk', ['+15550300']);
    await sip.createSipDispatchRule({ type: 'direct', roomName: 'tiny' }, { trunkIds: [trunk.sipTrunkId] });
    await rooms.createRoom({ name: 'tiny', maxParticipants: 1 });
    const host = await NodeParticipant.connect(gw.url, await joinToken('tiny', 'only-one'));
    try {
      const phone = await runSipp(gw.sipPort, { called: '+15550300', caller: PHONE, expect: 486 });
      const result = await phone.done;
      expect(result.code, result.output).toBe(0);
    } finally {
      await host.leave();
    }
  });

  it('a CANCEL while it rings gets 487 and leaves nobody in the room', async () => {
    const phone = await runSipp(gw.sipPort, { called: '+15550200', caller: '+15550144', expect: 487 });
    const result = await phone.done;
    expect(result.code, result.output).toBe(0);
    // The join that was under way when the CANCEL came is undone.
    await waitFor(async () => ((await rooms.listParticipants('lobby').catch(() => [])).some((p) => p.identity === 'sip_+15550144') ? undefined : true), 10_000, 'no SIP participant left');
  });

  it('drops datagrams that are not SIP and still answers OPTIONS', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    try {
      const replies: string[] = [];
      sock.on('message', (m) => replies.push(m.toString()));
      const junk = ['\r\n\r\n', 'INVITE sip:x SIP/2.0\r\n\r\n', 'INVITE sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\n', randomBytes(1400).toString('latin1'),
        'BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nCall-ID: nope\r\nCSeq: x\r\n\r\n'];
      for (const j of junk) sock.send(j, gw.sipPort, '127.0.0.1');
      const options = ['OPTIONS sip:roomgate@127.0.0.1 SIP/2.0', `Via: SIP/2.0/UDP 127.0.0.1:${sock.address().port};branch=z9hG4bK-opt`, 'From: <sip:probe@127.0.0.1>;tag=p1',
        'To: <sip:roomgate@127.0.0.1>', 'Call-ID: probe-1', 'CSeq: 1 OPTIONS', 'Max-Forwards: 70', 'Content-Length: 0', '', ''].join('\r\n');
      sock.send(options, gw.sipPort, '127.0.0.1');
      const reply = await waitFor(() => replies.find((r) => r.startsWith('SIP/2.0 200 OK')), 10_000, 'the OPTIONS answer');
      expect(reply).toMatch(/\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY\r\n/);
      expect(reply).toMatch(/\r\nCall-ID: probe-1\r\n/);
      // Only the OPTIONS was answered: the junk got no reply.
      expect(replies).toHaveLength(1);
    } finally {
      sock.close();
    }
  });

  it('puts an authenticated caller in its own room; a participant hears its tone; RemoveParticipant sends BYE', async () => {
    const tone = await muLawTone(1000, 5);
    const phone = await runSipp(gw.sipPort, { called: '+15550100', caller: PHONE, auth: AUTH, expect: 200, audio: tone, hangup: { by: 'gateway' } });
    const room = await phone.during(waitFor(async () => (await rooms.listRooms()).find((r) => r.name.startsWith(`call_${PHONE}_`))?.name, 20_000, 'the call room'));
    const caller = await phone.during(sipParticipant(room));
    expect(caller.identity).toBe(`sip_${PHONE}`);
    expect(caller.attributes).toMatchObject({ 'sip.phoneNumber': PHONE, 'sip.trunkPhoneNumber': '+15550100', 'sip.callStatus': 'active' });
    expect(caller.attributes['sip.callID']).toMatch(/^SCL_/);
    expect(caller.attributes['sip.trunkID']).toMatch(/^ST_/);

    const host = await NodeParticipant.connect(gw.url, await joinToken(room, 'host', { canSubscribe: true }));
    try {
      const track = await waitFor(() => host.remoteTracks.find((t: RemoteTrack) => t.participantIdentity === caller.identity && t.kind === 'audio'), 20_000, 'the caller\'s audio track');
      expect(await toneOf(track, 1000)).toBeGreaterThan(0.8);
    } finally {
      await host.leave();
    }
    await rooms.removeParticipant(room, caller.identity);
    const result = await phone.done;
    expect(result.code, result.output).toBe(0);
  });

  it('sends the room\'s audio to the caller (its echo carries a participant\'s tone back); DTMF keys become data', async () => {
    // The host speaks first: the phone echoes what it hears, so the SIP participant's own track
    // carries the host's 440 Hz only if the room's mix reached the phone as G.711.
    const host = await NodeParticipant.connect(gw.url, await joinToken('lobby', 'host', { canSubscribe: true, canPublish: true }));
    try {
      const voice = await host.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
      const phone = await runSipp(gw.sipPort, { called: '+15550200', caller: '+15550122', expect: 200, echo: true, hangup: { by: 'gateway' } });
      const caller = await phone.during(sipParticipant('lobby', 'sip_+15550122'));
      expect(caller.attributes).toMatchObject({ desk: 'front', 'sip.phoneNumber': '+15550122' });
      const track = await waitFor(() => host.remoteTracks.find((t: RemoteTrack) => t.participantIdentity === caller.identity && t.kind === 'audio'), 20_000, 'the caller\'s audio track');
      const share = await toneOf(track, 440, 500);
      expect(share).toBeGreaterThan(0.8);
      await voice.stop();

      // Keys pressed on the phone reach the room as data from the caller.
      const digits: { from?: string | undefined; topic?: string | undefined; body: unknown }[] = [];
      host.on('dataReceived', (m) => digits.push({ from: m.from, topic: m.topic, body: JSON.parse(new TextDecoder().decode(m.payload)) }));
      const port = await waitFor(() => phone.answerPort(), 10_000, 'the answer in SIPp\'s trace');
      await sendDtmf(port, '4', 1);
      await sendDtmf(port, '#', 2);
      await waitFor(() => (digits.length >= 2 ? true : undefined), 10_000, 'two DTMF messages');
      expect(digits).toEqual([
        { from: caller.identity, topic: 'sip.dtmf', body: { code: 4, digit: '4' } },
        { from: caller.identity, topic: 'sip.dtmf', body: { code: 11, digit: '#' } },
      ]);
      await rooms.removeParticipant('lobby', caller.identity);
      const result = await phone.done;
      expect(result.code, result.output).toBe(0);
    } finally {
      await host.leave();
    }
  });

  it('a rule with a PIN answers, takes the digits and #: the right PIN joins the room, a wrong one hangs up before anyone sees the call', async () => {
    const trunk = await sip.createSipInboundTrunk('vault', ['+15550400']);
    await sip.createSipDispatchRule({ type: 'direct', roomName: 'vault', pin: '2468' }, { trunkIds: [trunk.sipTrunkId] });
    const seen: string[] = [];
    const host = await NodeParticipant.connect(gw.url, await joinToken('vault', 'guard', { canSubscribe: true }));
    host.on('participantConnected', (p) => seen.push(String(p.identity)));
    try {
      const wrong = await runSipp(gw.sipPort, { called: '+15550400', caller: '+15550155', expect: 200, hangup: { by: 'gateway' } });
      const wrongPort = await wrong.during(waitFor(() => wrong.answerPort(), 10_000, 'the answer in SIPp\'s trace'));
      for (const [i, d] of [...'1357#'].entries()) await sendDtmf(wrongPort, d, i);
      const w = await wrong.done;
      expect(w.code, w.output).toBe(0);

      const right = await runSipp(gw.sipPort, { called: '+15550400', caller: '+15550166', expect: 200, hangup: { by: 'gateway' } });
      const port = await right.during(waitFor(() => right.answerPort(), 10_000, 'the answer in SIPp\'s trace'));
      for (const [i, d] of [...'2468#'].entries()) await sendDtmf(port, d, i);
      await right.during(sipParticipant('vault', 'sip_+15550166'));
      expect(seen).toEqual(['sip_+15550166']);
      await rooms.removeParticipant('vault', 'sip_+15550166');
      const r = await right.done;
      expect(r.code, r.output).toBe(0);
    } finally {
      await host.leave();
    }
  });

  it('answers a re-INVITE and ends the call when the caller hangs up: the SIP participant leaves the room', async () => {
    const host = await NodeParticipant.connect(gw.url, await joinToken('lobby', 'host2', { canSubscribe: true }));
    const statuses: string[] = [];
    host.on('participantUpdated', (p) => {
      const attributes = p.attributes as Record<string, string> | undefined;
      if (p.identity === 'sip_+15550133' && attributes?.['sip.callStatus']) statuses.push(attributes['sip.callStatus']);
    });
    try {
      const phone = await runSipp(gw.sipPort, { called: '+15550200', caller: '+15550133', expect: 200, reinvite: true, hangup: { by: 'phone', holdMs: scaled(3000) } });
      const caller = await phone.during(sipParticipant('lobby', 'sip_+15550133'));
      expect(caller.kind).toBe(ParticipantInfo_Kind.SIP);
      const result = await phone.done;
      expect(result.code, result.output).toBe(0);
      // The room sees the call hang up before the participant goes.
      await waitFor(() => (statuses.includes('hangup') ? true : undefined), 10_000, 'sip.callStatus hangup');
    } finally {
      await host.leave();
    }
    await waitFor(async () => ((await rooms.listParticipants('lobby').catch(() => [])).some((p) => p.kind === ParticipantInfo_Kind.SIP) ? undefined : true), 10_000, 'the SIP participant to leave');
  });
});

describe('baresip calls in', () => {
  it('a baresip softphone passes the trunk\'s digest auth, joins its own room and a participant hears its sine; RemoveParticipant hangs it up', async () => {
    const trunk = await sip.createSipInboundTrunk('softphones', ['+15550500'], { authUsername: 'desk', authPassword: 'baresip-secret' });
    await sip.createSipDispatchRule({ type: 'individual', roomPrefix: 'soft' }, { trunkIds: [trunk.sipTrunkId] });
    const phone = await runBaresip({ user: '+15550177', dial: `sip:+15550500@127.0.0.1:${gw.sipPort}`, toneHz: 800, auth: { username: 'desk', password: 'baresip-secret' }, quitAfterS: 60 });
    try {
      const room = await waitFor(async () => {
        phone.alive();
        return (await rooms.listRooms()).find((r) => r.name.startsWith('soft_+15550177_'))?.name;
      }, 20_000, 'baresip\'s call room');
      const caller = await sipParticipant(room, 'sip_+15550177');
      expect(caller.attributes).toMatchObject({ 'sip.phoneNumber': '+15550177', 'sip.trunkPhoneNumber': '+15550500', 'sip.callStatus': 'active' });
      const host = await NodeParticipant.connect(gw.url, await joinToken(room, 'host', { canSubscribe: true }));
      try {
        const track = await waitFor(() => {
          phone.alive();
          return host.remoteTracks.find((t: RemoteTrack) => t.participantIdentity === caller.identity && t.kind === 'audio');
        }, 20_000, 'baresip\'s audio track');
        expect(await toneOf(track, 800)).toBeGreaterThan(0.8);
      } finally {
        await host.leave();
      }
      await rooms.removeParticipant(room, caller.identity);
      await waitFor(() => (/terminated|closed/i.test(phone.output()) ? true : undefined), 10_000, 'baresip to see the BYE');
    } catch (err) {
      throw new Error(`${(err as Error).message}\nbaresip said:\n${phone.output().slice(-1500)}`);
    } finally {
      await phone.stop();
    }
  });
});
