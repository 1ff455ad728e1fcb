// Malformed input gets a precise 4xx Twirp error and never takes the gateway down.
import net from 'node:net';
import { AccessToken, RoomServiceClient } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let token: string;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  const at = new AccessToken(API_KEY, API_SECRET, { identity: 'fuzzer' });
  at.addGrant({ roomCreate: true, roomList: true, roomAdmin: true, room: 'fuzz' });
  token = await at.toJwt();
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

interface Sent {
  path?: string;
  method?: string;
  contentType?: string | null;
  body?: string | Uint8Array;
  auth?: string | null;
}

async function send({ path = '/twirp/livekit.RoomService/CreateRoom', method = 'POST', contentType = 'application/json', body, auth }: Sent) {
  const headers: Record<string, string> = {};
  if (contentType !== null) headers['Content-Type'] = contentType;
  if (auth !== null) headers.Authorization = auth ?? `Bearer ${token}`;
  const res = await fetch(`${gw.url}${path}`, { method, headers, ...(body !== undefined ? { body: body as BodyInit } : {}) });
  const text = await res.text();
  let json: { code?: string; msg?: string } | undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get('content-type'), json, text };
}

function nested(depth: number): string {
  return `{"name":${'['.repeat(depth)}${']'.repeat(depth)}}`;
}

describe('bad input on the Twirp API', () => {
  it.each<[string, Sent, number, string, RegExp]>([
    ['malformed JSON', { body: '{"name": "x"' }, 400, 'malformed', /json request could not be decoded/],
    ['a JSON array', { body: '[1,2]' }, 400, 'malformed', /must be an object/],
    ['a wrong field type', { body: '{"name": 12}' }, 400, 'malformed', /invalid livekit.CreateRoomRequest/],
    ['a negative uint', { body: '{"name":"a","emptyTimeout":-5}' }, 400, 'malformed', /CreateRoomRequest/],
    ['an empty_timeout of 2^32-1 s', { body: '{"name":"a","emptyTimeout":4294967295}' }, 400, 'invalid_argument', /empty_timeout must be at most 604800 seconds/],
    ['a departure_timeout past a week', { body: '{"name":"a","departureTimeout":604801}' }, 400, 'invalid_argument', /departure_timeout must be at most/],
    ['a max_participants of 2^32-1', { body: '{"name":"a","maxParticipants":4294967295}' }, 400, 'invalid_argument', /max_participants must be at most 100000/],
    ['bad protobuf', { body: new Uint8Array([0xff, 0xff, 0xff, 0x0f]), contentType: 'application/protobuf' }, 400, 'malformed', /protobuf request could not be decoded/],
    ['wrong content type', { body: '{}', contentType: 'text/plain' }, 404, 'bad_route', /unexpected Content-Type 'text\/plain'/],
    ['no content type', { body: '{}', contentType: null }, 404, 'bad_route', /unexpected Content-Type/],
    ['unknown method', { path: '/twirp/livekit.RoomService/DropTables', body: '{}' }, 404, 'bad_route', /no such method/],
    ['unknown service', { path: '/twirp/livekit.Nope/CreateRoom', body: '{}' }, 404, 'bad_route', /no such method/],
    ['extra path segments', { path: '/twirp/livekit.RoomService/CreateRoom/x', body: '{}' }, 404, 'bad_route', /no such method/],
    ['GET', { method: 'GET' }, 404, 'bad_route', /only POST/],
    ['a body over 1 MiB', { body: JSON.stringify({ name: 'x', metadata: 'm'.repeat(1024 * 1024) }) }, 400, 'malformed', /exceeds 1048576 bytes/],
    ['deeply nested JSON', { body: nested(100_000) }, 400, 'malformed', /CreateRoomRequest/],
    ['a Basic auth header', { body: '{}', auth: 'Basic dXNlcjpwYXNz' }, 401, 'unauthenticated', /missing access token/],
    ['a garbage bearer', { body: '{}', auth: 'Bearer a.b.c' }, 401, 'unauthenticated', /not a valid JWT/],
  ])('%s', async (_name, req, status, code, msg) => {
    const res = await send(req);
    expect(res.status).toBe(status);
    expect(res.contentType).toBe('application/json');
    expect(res.json?.code).toBe(code);
    expect(res.json?.msg).toMatch(msg);
  });

  it('refuses a chunked body over 1 MiB without reading it all', async () => {
    const chunk = new Uint8Array(256 * 1024).fill(0x20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 64) return controller.close(); // 16 MiB offered in all
        sent++;
        controller.enqueue(chunk);
      },
    });
    const res = await fetch(`${gw.url}/twirp/livekit.RoomService/CreateRoom`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(400);
    expect((await res.json()).msg).toMatch(/exceeds 1048576 bytes/);
    expect(sent).toBeLessThan(64);
  });

  it('answers raw garbage on the socket with 400 and keeps serving', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(gw.port, '127.0.0.1', () => sock.write('\x16\x03\x01 not http at all\r\n\r\n'));
      let data = '';
      sock.on('data', (d) => (data += d.toString()));
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1.1 400/);
  });

  it('survives a few hundred generated bad requests, then serves a good one', async () => {
    // Deterministic generator: mutations of a valid body, random bytes, wrong types and headers.
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return (seed >>> 16) % n; // the low bits of this LCG cycle too fast to be useful
    };
    const valid = JSON.stringify({ name: 'fuzz', emptyTimeout: 10, metadata: 'x' });
    const mutate = (): Sent => {
      switch (rand(8)) {
        case 0: {
          const i = rand(valid.length);
          return { body: valid.slice(0, i) + String.fromCharCode(rand(256)) + valid.slice(i + 1) };
        }
        case 1:
          return { body: valid.slice(0, rand(valid.length)) };
        case 2:
          return { body: new Uint8Array(Array.from({ length: rand(200) }, () => rand(256))), contentType: 'application/protobuf' };
        case 3:
          return { body: JSON.stringify({ name: [rand(10)], emptyTimeout: 'soon', maxParticipants: { a: 1 } }) };
        case 4:
          return { body: valid, contentType: ['text/html', 'application/xml', 'multipart/form-data', ''][rand(4)]! };
        case 5:
          return { path: `/twirp/livekit.RoomService/${'X'.repeat(rand(50))}`, body: valid };
        case 6:
          return { body: valid, auth: ['Bearer ', 'Bearer x.y', `Bearer ${token.slice(0, -3)}abc`, null][rand(4)]! };
        default:
          return { body: `{"name":"${'\\u'.repeat(rand(5))}${rand(1000)}","emptyTimeout":${'9'.repeat(rand(30))}}` };
      }
    };
    const statuses = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const res = await send(mutate());
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      // Every answer is either a success (a mutation can stay valid) or a Twirp 4xx, never a 5xx.
      expect(res.status === 200 || (res.status >= 400 && res.status < 500)).toBe(true);
      if (res.status !== 200) expect(res.json?.code).toBeTypeOf('string');
    }
    // The generator reaches all three rejection paths: decoding (400), auth (401) and routing (404).
    expect([...statuses.keys()].filter((s) => s >= 400).sort()).toEqual([400, 401, 404]);
    const client = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
    const room = await client.createRoom({ name: 'after-fuzz' });
    expect(room.name).toBe('after-fuzz');
    expect((await (await fetch(`${gw.url}/healthz`)).json()).status).toBe('ok');
  });
});
