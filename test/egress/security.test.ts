// Trust boundaries of egress (issue 19). The internal tap API (/internal/egress/…) hands out a
// room's media: only the egress workers' credential opens it, only for a live egress job (room and source as the job says), RTP goes only
// to the workers' RTP hosts, sessions are capped, and bad percent-encoding is a 400. No worker runs:
// the test calls the API as a worker would, so the egress stays EGRESS_STARTING meanwhile.
// A publisher's codec parameters go into the SDP egress FFmpeg reads: one holding a line break
// (an injected m-line) is refused when published.
import dgram from 'node:dgram';
import { Redis } from 'ioredis';
import { AccessToken, EgressClient, EncodedFileOutput, S3Upload, StreamOutput } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveWorkerSecret } from '../../src/auth/workerCredential.ts';
import type { NodeParticipant } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let egress: EgressClient;
let alice: NodeParticipant;
let egressId = '';
const WORKER = `Bearer ${deriveWorkerSecret(API_SECRET)}`;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_EGRESS_MAX_TAP_SESSIONS: '2' });
  egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  alice = await join(gw.url, 'taps', 'alice', { canPublish: true });
  await alice.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=15'] });
  egressId = (await egress.startParticipantEgress('taps', 'alice', { file: new EncodedFileOutput({ filepath: 'taps/x' }) })).egressId;
});

afterAll(async () => {
  await alice?.leave();
  await gw?.close();
  await redis?.stop();
});

async function call(path: string, body: unknown, auth: string, method = 'POST') {
  const res = await fetch(`${gw.url}/internal/egress${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: auth },
    ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as { code?: string; msg?: string; state?: string; sessionId?: string; tracks?: { trackSid: string }[] } };
}

const source = { kind: 'participant', identity: 'alice', screenShare: false };

describe('internal egress tap API', () => {
  it('refuses a client token holding roomRecord (the issue: it got the room and its media)', async () => {
    const at = new AccessToken(API_KEY, API_SECRET, { identity: 'recorder' });
    at.addGrant({ roomRecord: true });
    const token = `Bearer ${await at.toJwt()}`;
    const open = await call('/open', { egressId, room: 'taps', source }, token);
    expect(open.status).toBe(401);
    expect(open.body.code).toBe('unauthenticated');
    expect((await call('/room/taps', { egressId }, token)).status).toBe(401);
    expect((await call('/open', { egressId, room: 'taps', source }, 'Bearer')).status).toBe(401);
  });

  it('refuses a made-up egress id, another room and another source', async () => {
    const madeUp = await call('/open', { egressId: 'EG_madeup', room: 'taps', source }, WORKER);
    expect(madeUp.status).toBe(412);
    expect(madeUp.body.msg).toMatch(/not a live egress job/);
    const otherRoom = await call('/open', { egressId, room: 'elsewhere', source }, WORKER);
    expect(otherRoom.status).toBe(403);
    const otherSource = await call('/open', { egressId, room: 'taps', source: { ...source, identity: 'bob' } }, WORKER);
    expect(otherSource.status).toBe(403);
    const snapshot = await call('/room/elsewhere', { egressId }, WORKER);
    expect(snapshot.status).toBe(403);
  });

  it('opens a session for the live job and sends RTP only to the worker RTP host', async () => {
    const open = await call('/open', { egressId, room: 'taps', source }, WORKER);
    expect(open.status).toBe(200);
    expect(open.body.state).toBe('ready');
    const sid = open.body.sessionId!;
    const trackSid = open.body.tracks![0]!.trackSid;
    const elsewhere = await call(`/${sid}/connect`, { targets: [{ trackSid, ip: '127.0.0.2', port: 40000, rtcpPort: 40001 }] }, WORKER);
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body.msg).toMatch(/not an egress worker RTP host/);
    // The configured RTP host (egress.rtp_host, 127.0.0.1 here) gets the track's RTP.
    const rtp = dgram.createSocket('udp4');
    const rtcp = dgram.createSocket('udp4');
    try {
      await Promise.all([rtp, rtcp].map((sock) => new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve))));
      const got = new Promise<void>((resolve) => rtp.once('message', () => resolve()));
      const ok = await call(`/${sid}/connect`, { targets: [{ trackSid, ip: '127.0.0.1', port: rtp.address().port, rtcpPort: rtcp.address().port }] }, WORKER);
      expect(ok.status).toBe(200);
      await got;
    } finally {
      rtp.close();
      rtcp.close();
    }
    expect((await call(`/${sid}`, undefined, WORKER, 'DELETE')).status).toBe(200);
  });

  it('caps the number of tap sessions', async () => {
    const a = await call('/open', { egressId, room: 'taps', source }, WORKER);
    const b = await call('/open', { egressId, room: 'taps', source }, WORKER);
    expect([a.status, b.status]).toEqual([200, 200]);
    const c = await call('/open', { egressId, room: 'taps', source }, WORKER);
    expect(c.status).toBe(429);
    expect(c.body.code).toBe('resource_exhausted');
    await call(`/${a.body.sessionId!}`, undefined, WORKER, 'DELETE');
    await call(`/${b.body.sessionId!}`, undefined, WORKER, 'DELETE');
  });

  it('answers 400 to malformed percent-encoding', async () => {
    const r = await call('/room/%E0%A4%A', { egressId }, WORKER);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('malformed');
  });

  it('refuses a job that is no longer live', async () => {
    await egress.stopEgress(egressId); // queued, no worker: removed and ABORTED
    const r = await call('/open', { egressId, room: 'taps', source }, WORKER);
    expect(r.status).toBe(412);
  });
});

describe('egress job data in Redis', () => {
  it('holds no stream key and no S3 secret in plain text', async () => {
    const key = 'streamkey0123456789abcdef';
    const s3secret = 'S3SECRET-9876543210-zyxw';
    const info = await egress.startParticipantEgress('taps', 'alice', {
      stream: new StreamOutput({ urls: [`rtmp://127.0.0.1:1935/live/${key}`] }),
      file: new EncodedFileOutput({ filepath: 'taps/sealed', output: { case: 's3', value: new S3Upload({ bucket: 'recordings', endpoint: 'http://127.0.0.1:9', accessKey: 'AKIDTEST', secret: s3secret }) } }),
    });
    const r = new Redis(redis.url);
    try {
      const data = await r.hget(`roomgate:bull:egress:${info.egressId}`, 'data');
      expect(data).toContain('"roomName":"taps"');
      expect(data).toContain('enc:v1:');
      expect(data).not.toContain(key);
      expect(data).not.toContain(s3secret);
    } finally {
      r.disconnect();
      await egress.stopEgress(info.egressId);
    }
  });
});

describe('codec parameters at publish time', () => {
  it('refuses an Opus parameter whose value would add an m-line to the egress SDP', async () => {
    const mallory = await join(gw.url, 'taps', 'mallory', { canPublish: true });
    try {
      const t = (await mallory.signal.request('createTransport', { direction: 'send' })) as { id: string };
      const rtpParameters = {
        codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: { useinbandfec: '1\r\nm=audio 45000 RTP/AVP 0\r\na=x' }, rtcpFeedback: [] }],
        encodings: [{ ssrc: 4242 }],
        headerExtensions: [],
        rtcp: { cname: 'mallory' },
      };
      const err = await mallory.signal.request('publishTrack', { transportId: t.id, kind: 'audio', source: 'microphone', rtpParameters }).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(err?.code).toBe('invalid_argument');
      expect(err?.message).toMatch(/codec parameter "useinbandfec" of audio\/opus has a value that is not allowed/);
      const unknownKey = await mallory.signal
        .request('publishTrack', { transportId: t.id, kind: 'audio', source: 'microphone', rtpParameters: { ...rtpParameters, codecs: [{ ...rtpParameters.codecs[0]!, parameters: { 'x=y': 1 } }] } })
        .then(
          () => undefined,
          (e: unknown) => e as { code?: string; message?: string },
        );
      expect(unknownKey?.code).toBe('invalid_argument');
      expect(unknownKey?.message).toMatch(/"x=y" of audio\/opus is not a valid fmtp name/);
    } finally {
      await mallory.leave();
    }
  });
});
