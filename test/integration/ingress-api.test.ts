// livekit.Ingress through the real IngressClient: definitions with CSPRNG stream keys, stored in
// Redis (they survive a restart), with precise errors.
import { IngressState_Status } from '@livekit/protocol';
import { AccessToken, IngressClient, IngressInput, TwirpError } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { rejection } from '../helpers/errors.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let client: IngressClient;
const env = () => ({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_RTMP_BASE_URL: 'rtmp://media.example.com:1935/live', ROOMGATE_NODE_ID: 'ND_ingress' });

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway(env());
  client = new IngressClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

describe('Ingress API', () => {
  it('creates an RTMP ingress (no inputType on the wire) with a 128-bit stream key', async () => {
    const info = await client.createIngress(IngressInput.RTMP_INPUT, {
      name: 'studio',
      roomName: 'show',
      participantIdentity: 'obs',
      participantName: 'OBS',
      participantMetadata: '{"cam":1}',
    });
    expect(info.ingressId).toMatch(/^IN_[A-Za-z0-9]{12}$/);
    expect(Buffer.from(info.streamKey, 'base64url').length).toBeGreaterThanOrEqual(16);
    expect(info).toMatchObject({
      name: 'studio',
      url: 'rtmp://media.example.com:1935/live',
      inputType: IngressInput.RTMP_INPUT,
      roomName: 'show',
      participantIdentity: 'obs',
      participantName: 'OBS',
      participantMetadata: '{"cam":1}',
      reusable: true,
      enabled: true,
      bypassTranscoding: true,
    });
    expect(info.state?.status).toBe(IngressState_Status.ENDPOINT_INACTIVE);

    const second = await client.createIngress(IngressInput.RTMP_INPUT, { roomName: 'show', participantIdentity: 'obs2' });
    expect(second.streamKey).not.toBe(info.streamKey);
  });

  it('creates a WHIP ingress with the WHIP URL, and checks URL input sources', async () => {
    const whip = await client.createIngress(IngressInput.WHIP_INPUT, { roomName: 'show', participantIdentity: 'browser', enableTranscoding: false });
    expect(whip.url).toBe(`${gw.url}/w`);
    expect(whip.enableTranscoding).toBe(false);
    const scheme = await rejection(client.createIngress(IngressInput.URL_INPUT, { roomName: 'show', participantIdentity: 'u', url: 'file:///etc/passwd' }), TwirpError);
    expect(scheme).toMatchObject({ code: 'invalid_argument', status: 400, message: "url scheme 'file:' is not supported; use http, https or srt" });
    const garbage = await rejection(client.createIngress(IngressInput.URL_INPUT, { roomName: 'show', participantIdentity: 'u', url: 'not a url' }), TwirpError);
    expect(garbage).toMatchObject({ code: 'invalid_argument', message: "url 'not a url' is not a valid URL" });
  });

  it('lists, updates and deletes, and keeps definitions across a restart', async () => {
    const made = await client.createIngress(IngressInput.RTMP_INPUT, { name: 'cam', roomName: 'other-room', participantIdentity: 'cam' });
    expect((await client.listIngress({ roomName: 'other-room' })).map((i) => i.ingressId)).toEqual([made.ingressId]);
    expect((await client.listIngress({ ingressId: made.ingressId }))[0]?.name).toBe('cam');

    const updated = await client.updateIngress(made.ingressId, { name: 'cam-2', enabled: false, participantName: 'Camera', enableTranscoding: true });
    expect(updated).toMatchObject({ name: 'cam-2', enabled: false, participantName: 'Camera', enableTranscoding: true, bypassTranscoding: false, streamKey: made.streamKey });

    await gw.close();
    gw = await startTestGateway(env());
    client = new IngressClient(gw.url, API_KEY, API_SECRET);
    const after = (await client.listIngress({ ingressId: made.ingressId }))[0];
    expect(after).toMatchObject({ name: 'cam-2', enabled: false, streamKey: made.streamKey });

    const deleted = await client.deleteIngress(made.ingressId);
    expect(deleted.ingressId).toBe(made.ingressId);
    expect(await client.listIngress({ roomName: 'other-room' })).toEqual([]);
    expect((await rejection(client.deleteIngress(made.ingressId), TwirpError)).code).toBe('not_found');
    expect((await rejection(client.updateIngress('IN_nope', { name: 'x' }), TwirpError)).code).toBe('not_found');
  });

  it('needs the ingressAdmin grant and valid fields', async () => {
    const at = new AccessToken(API_KEY, API_SECRET, { identity: 'svc' });
    at.addGrant({ roomCreate: true });
    const res = await fetch(`${gw.url}/twirp/livekit.Ingress/ListIngress`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${await at.toJwt()}` },
      body: '{}',
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'permission_denied', msg: 'the ingressAdmin grant is required' });
    const noIdentity = await fetch(`${gw.url}/twirp/livekit.Ingress/CreateIngress`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${await ingressToken()}` },
      body: '{"roomName":"r"}',
    });
    expect(noIdentity.status).toBe(400);
    expect((await noIdentity.json()).msg).toBe('identity must not be empty');
  });
});

async function ingressToken(): Promise<string> {
  const at = new AccessToken(API_KEY, API_SECRET, { identity: 'svc' });
  at.addGrant({ ingressAdmin: true });
  return at.toJwt();
}
