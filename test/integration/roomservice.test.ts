// RoomService through the real livekit-server-sdk against a real gateway (real Redis, mediasoup).
import { AccessToken, DataPacket_Kind, Room, RoomServiceClient, TwirpError } from 'livekit-server-sdk';
import { CreateRoomRequest, ListRoomsResponse } from '@livekit/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { rejection } from '../helpers/errors.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let client: RoomServiceClient;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  client = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

const serverError = (p: Promise<unknown>) => rejection(p, TwirpError);

async function rawCall(method: string, body: string | Uint8Array, token: string, contentType = 'application/json') {
  return fetch(`${gw.url}/twirp/livekit.RoomService/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Authorization: `Bearer ${token}` },
    body: body as BodyInit,
  });
}

async function serviceToken(grant: Record<string, unknown>, secret = API_SECRET, ttl: number | string = '10m') {
  const at = new AccessToken(API_KEY, secret, { ttl, identity: 'test-service' });
  at.addGrant(grant);
  return at.toJwt();
}

describe('RoomService with livekit-server-sdk', () => {
  it('creates, lists and deletes rooms', async () => {
    const created = await client.createRoom({ name: 'sdk-room', emptyTimeout: 600, maxParticipants: 7, metadata: 'hello' });
    expect(created).toBeInstanceOf(Room);
    expect(created.sid).toMatch(/^RM_[A-Za-z0-9]{12}$/);
    expect(created).toMatchObject({ name: 'sdk-room', emptyTimeout: 600, maxParticipants: 7, metadata: 'hello', departureTimeout: 20 });
    expect(Number(created.creationTime)).toBeGreaterThan(Date.now() / 1000 - 60);

    // CreateRoom on an existing name returns the same room unchanged.
    const again = await client.createRoom({ name: 'sdk-room', metadata: 'other' });
    expect(again.sid).toBe(created.sid);
    expect(again.metadata).toBe('hello');

    await client.createRoom({ name: 'sdk-room-2' });
    const all = await client.listRooms();
    expect(all.map((r) => r.name)).toEqual(expect.arrayContaining(['sdk-room', 'sdk-room-2']));
    const some = await client.listRooms(['sdk-room-2', 'no-such-room']);
    expect(some.map((r) => r.name)).toEqual(['sdk-room-2']);

    const updated = await client.updateRoomMetadata('sdk-room', '{"topic":"x"}');
    expect(updated.metadata).toBe('{"topic":"x"}');
    expect((await client.listRooms(['sdk-room']))[0]!.metadata).toBe('{"topic":"x"}');

    await client.deleteRoom('sdk-room');
    expect((await client.listRooms()).map((r) => r.name)).not.toContain('sdk-room');
    const gone = await serverError(client.deleteRoom('sdk-room'));
    expect(gone).toMatchObject({ code: 'not_found', status: 404, message: "room 'sdk-room' does not exist" });
  });

  it('answers participant methods for an empty room and unknown rooms', async () => {
    await client.createRoom({ name: 'p-room' });
    expect(await client.listParticipants('p-room')).toEqual([]);
    const cases: [string, Promise<unknown>][] = [
      ['getParticipant', client.getParticipant('p-room', 'alice')],
      ['removeParticipant', client.removeParticipant('p-room', 'alice')],
      ['mutePublishedTrack', client.mutePublishedTrack('p-room', 'alice', 'TR_x', true)],
      ['updateParticipant', client.updateParticipant('p-room', 'alice', { metadata: 'm' })],
      ['updateSubscriptions', client.updateSubscriptions('p-room', 'alice', ['TR_x'], true)],
    ];
    for (const [name, call] of cases) {
      const err = await serverError(call);
      expect({ name, code: err.code, message: err.message }).toEqual({
        name,
        code: 'not_found',
        message: "participant 'alice' is not in room 'p-room'",
      });
    }
    await client.sendData('p-room', new TextEncoder().encode('hi'), DataPacket_Kind.RELIABLE, { topic: 't' });
    const noRoom = await serverError(client.listParticipants('nope'));
    expect(noRoom.code).toBe('not_found');
    expect((await serverError(client.sendData('nope', new Uint8Array([1]), DataPacket_Kind.LOSSY))).code).toBe('not_found');
  });

  it('rejects bad tokens as unauthenticated and missing grants as permission_denied', async () => {
    const wrongSecret = new RoomServiceClient(gw.url, API_KEY, 'wrong-secret');
    expect(await serverError(wrongSecret.listRooms())).toMatchObject({
      code: 'unauthenticated',
      status: 401,
      message: 'access token signature is invalid',
    });

    const expired = await serviceToken({ roomList: true }, API_SECRET, -120);
    const res = await rawCall('ListRooms', '{}', expired);
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ code: 'unauthenticated', msg: 'access token has expired', meta: {} });

    // The SDK client path for an expired token too: a client constructed with a ready-made token.
    const expiredClient = new RoomServiceClient(gw.url, undefined, undefined, { token: expired } as never);
    const viaSdk = await serverError(expiredClient.listRooms());
    expect(viaSdk.code).toBe('unauthenticated');

    const joinOnly = await serviceToken({ roomJoin: true, room: 'x' });
    const denied = await (await rawCall('CreateRoom', '{"name":"x"}', joinOnly)).json();
    expect(denied).toEqual({ code: 'permission_denied', msg: 'the roomCreate grant is required', meta: {} });
    const listDenied = await rawCall('ListRooms', '{}', await serviceToken({ roomCreate: true }));
    expect(listDenied.status).toBe(403);

    await client.createRoom({ name: 'admin-room' });
    const otherRoomAdmin = await serviceToken({ roomAdmin: true, room: 'different' });
    const wrongRoom = await (await rawCall('ListParticipants', '{"room":"admin-room"}', otherRoomAdmin)).json();
    expect(wrongRoom).toMatchObject({ code: 'permission_denied', msg: "the roomAdmin grant is for room 'different', not 'admin-room'" });

    const none = await fetch(`${gw.url}/twirp/livekit.RoomService/ListRooms`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(none.status).toBe(401);
    expect((await none.json()).msg).toMatch(/missing access token/);
  });

  it('accepts snake_case JSON and protobuf bodies, like the Go server', async () => {
    const token = await serviceToken({ roomCreate: true, roomList: true });
    const snake = await rawCall('CreateRoom', '{"name":"snake-room","empty_timeout":42,"max_participants":3,"unknown_field":1}', token);
    expect(snake.status).toBe(200);
    expect(await snake.json()).toMatchObject({ name: 'snake-room', empty_timeout: 42, max_participants: 3 });

    const binary = new CreateRoomRequest({ name: 'proto-room', departureTimeout: 5 }).toBinary();
    const res = await rawCall('CreateRoom', binary, token, 'application/protobuf');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/protobuf');
    const room = Room.fromBinary(new Uint8Array(await res.arrayBuffer()));
    expect(room).toMatchObject({ name: 'proto-room', departureTimeout: 5 });

    const listed = ListRoomsResponse.fromBinary(
      new Uint8Array(await (await rawCall('ListRooms', new Uint8Array(), token, 'application/protobuf')).arrayBuffer()),
    );
    expect(listed.rooms.map((r) => r.name)).toEqual(expect.arrayContaining(['snake-room', 'proto-room']));
  });

  it('validates room names and metadata', async () => {
    const token = await serviceToken({ roomCreate: true });
    const cases: [string, RegExp][] = [
      ['{"name":""}', /room must not be empty/],
      [JSON.stringify({ name: 'x'.repeat(300) }), /longer than 256 bytes/],
      [JSON.stringify({ name: 'a\u0001b' }), /control characters/],
      [JSON.stringify({ name: 'meta', metadata: 'm'.repeat(70_000) }), /metadata is larger than 64000 bytes/],
    ];
    for (const [body, msg] of cases) {
      const res = await rawCall('CreateRoom', body, token);
      expect(res.status).toBe(400);
      const json = await res.json();
      expect(json.code).toBe('invalid_argument');
      expect(json.msg).toMatch(msg);
    }
  });

  it('serves /healthz and /metrics', async () => {
    const health = await (await fetch(`${gw.url}/healthz`)).json();
    expect(health).toMatchObject({ status: 'ok', redis: true, workers: 1 });
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/roomgate_twirp_requests_total\{service="livekit.RoomService",method="CreateRoom",code="ok"\} \d+/);
    expect(metrics).toMatch(/roomgate_rooms \d+/);
  });
});
