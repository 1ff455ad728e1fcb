// Bad input on the participant socket: every bad frame gets an error back, the connection and the
// gateway survive, and the participant can still act afterwards.
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/errors.ts';
import type { Gateway } from '../../src/main.ts';
import { startTestGateway } from '../helpers/gateway.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

interface Msg {
  id?: number | null;
  ok?: boolean;
  event?: string;
  error?: { code: string; message: string };
  data?: unknown;
}

async function open(identity: string) {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/rtc?access_token=${await joinToken('fuzz-room', identity)}`);
  const inbox: Msg[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (d) => {
    inbox.push(JSON.parse(d.toString()) as Msg);
    waiters.splice(0).forEach((w) => w());
  });
  const next = async (pred: (m: Msg) => boolean, timeoutMs = 5000): Promise<Msg> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = inbox.findIndex(pred);
      if (i >= 0) return inbox.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error('no matching message');
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  await next((m) => m.event === 'joined');
  return { ws, next, inbox };
}

describe('hostile connections', () => {
  it('survives a join error whose message is long non-ASCII text (WebSocket close reasons are 123 bytes)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${b64({ alg: 'HS256' })}.${b64({ iss: 'é'.repeat(60), exp: now + 60 })}.${'A'.repeat(43)}`;
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/rtc?access_token=${token}`);
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(d.toString()));
    const code = await new Promise<number>((resolve) => ws.on('close', (c) => resolve(c)));
    expect(code).toBe(4401);
    expect(JSON.parse(frames[0]!).error).toMatchObject({ code: 'unauthenticated', message: expect.stringMatching(/unknown API key/) });
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });

  it('answers an upgrade with an unparsable target with 400 and stays up', async () => {
    const net = await import('node:net');
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(gw.port, '127.0.0.1', () =>
        sock.write('GET http://a:b/rtc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'),
      );
      let data = '';
      sock.on('data', (d) => (data += d.toString()));
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1.1 400/);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });

  it('refuses reconnect=1 when there is no session to resume, without joining', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/rtc?reconnect=1&access_token=${await joinToken('fuzz-room', 'never-joined')}`);
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(d.toString()));
    const code = await new Promise<number>((resolve) => ws.on('close', (c) => resolve(c)));
    expect(code).toBe(4404);
    expect(JSON.parse(frames[0]!).error.code).toBe('not_found');
    // The room may not exist at all (then not_found says so); any other failure fails the test.
    const identities = await gw.rooms.listParticipants('fuzz-room').then(
      (ps) => ps.map((p) => p.identity),
      (err: unknown) => {
        expect(err).toBeInstanceOf(ApiError);
        expect((err as ApiError).code).toBe('not_found');
        return [];
      },
    );
    expect(identities).not.toContain('never-joined');
  });
});

describe('signaling socket fuzz', () => {
  it.each<[string, string | Buffer, string, RegExp]>([
    ['garbage text', 'not json {', 'malformed', /not valid JSON/],
    ['a binary frame', Buffer.from([1, 2, 3]), 'malformed', /binary frames/],
    ['a JSON array', '[1,2,3]', 'malformed', /must be \{"id"/],
    ['an unknown method', '{"id":1,"method":"dropTables","data":{}}', 'malformed', /unknown method 'dropTables'/],
    ['a prototype key as method', '{"id":2,"method":"__proto__","data":{}}', 'malformed', /unknown method/],
    ['a string id', '{"id":"x","method":"ping","data":{}}', 'malformed', /must be/],
    ['extra envelope keys', '{"id":3,"method":"ping","data":{},"x":1}', 'malformed', /must be/],
    ['wrong data types', '{"id":4,"method":"createTransport","data":{"direction":"sideways"}}', 'invalid_argument', /createTransport: direction/],
    ['an unknown transport id', '{"id":5,"method":"connectTransport","data":{"transportId":"nope","dtlsParameters":{}}}', 'not_found', /transport 'nope' not found/],
    ['an unknown consumer id', '{"id":6,"method":"resumeConsumer","data":{"consumerId":"c"}}', 'not_found', /consumer 'c' not found/],
    ['an oversized frame', JSON.stringify({ id: 7, method: 'ping', data: {}, pad: 'x'.repeat(70_000) }), 'malformed', /larger than 65536 bytes/],
  ])('answers %s with a precise error', async (_name, frame, code, message) => {
    const { ws, next } = await open(`one-${Math.random().toString(36).slice(2)}`);
    ws.send(frame);
    const err = await next((m) => m.ok === false);
    expect(err.error?.code).toBe(code);
    expect(err.error?.message).toMatch(message);
    ws.send('{"id":99,"method":"ping","data":{}}');
    expect((await next((m) => m.id === 99)).ok).toBe(true);
    ws.close();
  });

  it('survives 1200 generated bad messages, then still works', async () => {
    const { ws, next, inbox } = await open('fuzzer');
    const t = (await new Promise<Msg>((resolve) => {
      ws.send('{"id":1,"method":"createTransport","data":{"direction":"send"}}');
      const check = setInterval(() => {
        const m = inbox.find((x) => x.id === 1);
        if (m) {
          clearInterval(check);
          resolve(m);
        }
      }, 20);
    })).data as { id: string };
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return (seed >>> 16) % n;
    };
    const methods = ['ready', 'createTransport', 'connectTransport', 'publishTrack', 'muteTrack', 'subscribe', 'resumeConsumer', 'setPreferredLayers', 'publishData', 'updateMetadata', 'nope'];
    const junk = () => [null, 1, -1, 'x', true, [], {}, { a: [1] }, 'x'.repeat(rand(300))][rand(9)];
    const frames: (string | Buffer)[] = [];
    for (let i = 0; i < 1200; i++) {
      const id = 1000 + i;
      switch (rand(6)) {
        case 0:
          frames.push(Buffer.from(Array.from({ length: rand(64) + 1 }, () => rand(256))));
          break;
        case 1:
          frames.push(`{"id":${id},"method":"${methods[rand(methods.length)]}","data":${JSON.stringify({ [['transportId', 'kind', 'rtpParameters', 'x'][rand(4)]!]: junk() })}}`);
          break;
        case 2:
          frames.push(JSON.stringify({ id, method: 'publishTrack', data: { transportId: t.id, kind: 'video', source: 'camera', rtpParameters: { codecs: [{ mimeType: 'video/VP8', payloadType: rand(300), clockRate: junk() }], encodings: junk() } } }));
          break;
        case 3:
          frames.push(JSON.stringify({ id, method: 'connectTransport', data: { transportId: t.id, dtlsParameters: { role: junk(), fingerprints: junk() } } }));
          break;
        case 4:
          frames.push(`{"id":${id},"method":"ping","data":${'['.repeat(rand(2000))}`);
          break;
        default:
          frames.push(JSON.stringify({ id, method: 'setPreferredLayers', data: { consumerId: String(junk()), spatialLayer: rand(10) - 2 } }));
      }
    }
    for (const f of frames) ws.send(f);
    ws.send('{"id":5000,"method":"ping","data":{}}');
    const pong = await next((m) => m.id === 5000, 30_000);
    expect(pong.ok).toBe(true);
    const answers = inbox.filter((m) => m.ok !== undefined);
    // Every frame was answered (an error, or success for the rare valid one), none crashed the server.
    expect(answers.length).toBeGreaterThanOrEqual(frames.length - 5);
    expect(answers.filter((m) => m.ok === false && m.error?.code === 'internal')).toEqual([]);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect((await (await fetch(`${gw.url}/healthz`)).json()).status).toBe('ok');
    ws.close();
  });
});
