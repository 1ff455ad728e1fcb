// Every WHIP/WHEP refusal has its status and an RFC 9457 problem body, and the gateway stays up:
// auth, content type, size, unusable offers, unknown sessions, capacity, WHEP grants; then 1000
// mutated offers, each answered below 500.
import { IngressClient, IngressInput } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { chromeWhepOffer, chromeWhipOffer, mutate } from '../fixtures/sdp.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { whipPublish } from '../helpers/whip.ts';

let redis: TestRedis;
let gw: Gateway;
let ingress: IngressClient;
let key: string;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_WHIP_MAX_SESSIONS: '1', ROOMGATE_STUN_URLS: 'stun:stun.example.com:3478' });
  ingress = new IngressClient(gw.url, API_KEY, API_SECRET);
  key = (await ingress.createIngress(IngressInput.WHIP_INPUT, { name: 'errs', roomName: 'errs', participantIdentity: 'errs-pub' })).streamKey;
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

async function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...headers }, body });
}

async function expectProblem(res: Response, status: number, detail?: RegExp): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  const p = JSON.parse(text) as { status: number; title: string; detail: string };
  expect(p.status).toBe(status);
  expect(p.title).toBeTruthy();
  if (detail) expect(p.detail).toMatch(detail);
}

async function alive(): Promise<void> {
  expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
}

describe('WHIP errors', () => {
  it('OPTIONS is a CORS preflight with Accept-Post and no ICE credentials; GET is 204', async () => {
    const res = await fetch(`${gw.url}/w`, { method: 'OPTIONS', headers: { Origin: 'https://obs.example', 'Access-Control-Request-Method': 'POST' } });
    expect(res.status).toBe(204);
    expect(res.headers.get('accept-post')).toBe('application/sdp');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    expect(res.headers.get('access-control-allow-methods')).toMatch(/PATCH/);
    expect(res.headers.get('link')).toBeNull();
    expect((await fetch(`${gw.url}/w`)).status).toBe(204);
    expect((await fetch(`${gw.url}/w/${key}`, { method: 'OPTIONS' })).status).toBe(204);
  });

  it('401 for a missing, unknown, disabled or non-WHIP stream key', async () => {
    await expectProblem(await post('/w', chromeWhipOffer()), 401, /stream key is required/);
    await expectProblem(await post('/w', chromeWhipOffer(), { Authorization: 'Bearer nope' }), 401, /unknown stream key/);
    await expectProblem(await post('/w/nope', chromeWhipOffer()), 401);
    await expectProblem(await post('/w', chromeWhipOffer(), { Authorization: 'Basic abc' }), 401);
    const rtmp = await ingress.createIngress(IngressInput.RTMP_INPUT, { name: 'r', roomName: 'errs', participantIdentity: 'rtmp' });
    await expectProblem(await post('/w', chromeWhipOffer(), { Authorization: `Bearer ${rtmp.streamKey}` }), 401);
    const off = await ingress.createIngress(IngressInput.WHIP_INPUT, { name: 'off', roomName: 'errs', participantIdentity: 'off', enabled: false });
    await expectProblem(await post('/w', chromeWhipOffer(), { Authorization: `Bearer ${off.streamKey}` }), 401, /disabled/);
    await alive();
  });

  it('415 for a wrong content type, 413 for an oversized body, 405 for other methods', async () => {
    await expectProblem(await post('/w', chromeWhipOffer(), { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }), 415);
    await expectProblem(await fetch(`${gw.url}/w`, { method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: chromeWhipOffer() }), 415);
    await expectProblem(await post('/w', `v=0\r\n${'a=x\r\n'.repeat(20_000)}`, { Authorization: `Bearer ${key}` }), 413);
    await expectProblem(await fetch(`${gw.url}/w`, { method: 'PUT' }), 405);
    await alive();
  });

  it('422 with the reason for unusable offers, and no ingress session is started', async () => {
    const auth = { Authorization: `Bearer ${key}` };
    await expectProblem(await post('/w', 'hello', auth), 422, /not SDP/);
    await expectProblem(await post('/w', 'v=0\r\n', auth), 422, /no m-line|ice-ufrag/);
    await expectProblem(await post('/w', chromeWhipOffer({ videoCodecs: 'vp9-only' }), auth), 422, /no supported codec offered \(have VP9/);
    await expectProblem(await post('/w', chromeWhipOffer({ videoCodecs: 'h264-high-only' }), auth), 422, /no supported codec/);
    await expectProblem(await post('/w', chromeWhipOffer({ setup: 'passive' }), auth), 422, /setup:passive/);
    await expectProblem(await post('/w', chromeWhipOffer({ twoVideo: true }), auth), 422, /at most one audio and one video/);
    await expectProblem(await post('/w', chromeWhipOffer({ direction: 'recvonly' }), auth), 422, /must be sendonly/);
    await expectProblem(await post('/w', chromeWhipOffer().replace(/a=group:BUNDLE.*\r\n/, ''), auth), 422, /BUNDLE/);
    await expectProblem(await post('/w', chromeWhipOffer().replace(/a=fingerprint:.*\r\n/g, ''), auth), 422, /fingerprint/);
    const [info] = await ingress.listIngress({ roomName: 'errs' }).then((l) => l.filter((i) => i.participantIdentity === 'errs-pub'));
    expect(info!.state?.resourceId ?? '').toBe('');
    await alive();
  });

  it('404 for unknown sessions and paths; 400 for bad percent-encoding', async () => {
    await expectProblem(await fetch(`${gw.url}/w/session/AAAAAAAAAAAAAAAAAAAAAA`, { method: 'DELETE' }), 404);
    await expectProblem(await fetch(`${gw.url}/w/session/AAAAAAAAAAAAAAAAAAAAAA`, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: 'a=end-of-candidates' }), 404);
    await expectProblem(await fetch(`${gw.url}/w/a/b/c`, { method: 'POST' }), 404);
    await expectProblem(await post('/w/%E0%A4%A', chromeWhipOffer()), 400);
    await alive();
  });

  it('503 + Retry-After over whip.max_sessions; session PATCH errors; then DELETE frees the slot', async () => {
    const first = await whipPublish(`${gw.url}/w`, key, { video: false, audio: true });
    try {
      expect(first.status).toBe(201);
      const other = await ingress.createIngress(IngressInput.WHIP_INPUT, { name: 'other', roomName: 'errs2', participantIdentity: 'other' });
      const busy = await post('/w', chromeWhipOffer(), { Authorization: `Bearer ${other.streamKey}` });
      expect(busy.headers.get('retry-after')).toMatch(/^\d+$/);
      await expectProblem(busy, 503);
      // On the live session: wrong PATCH type 415, bad sdpfrag 422, a token that is not its key 401.
      await expectProblem(await fetch(first.location, { method: 'PATCH', headers: { 'Content-Type': 'application/sdp' }, body: 'x' }), 415);
      await expectProblem(await fetch(first.location, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: 'garbage' }), 422);
      await expectProblem(await fetch(first.location, { method: 'DELETE', headers: { Authorization: 'Bearer wrong' } }), 401);
      await expectProblem(await fetch(first.location, { method: 'POST' }), 405);
      expect((await first.stop()).status).toBe(200);
    } finally {
      await first.close();
    }
    await alive();
  });
});

describe('WHEP errors', () => {
  it('401 without or with a bad token, 403 without the grant, 404 for rooms and participants that are not there', async () => {
    await expectProblem(await post('/whep/errs/errs-pub', chromeWhepOffer()), 401);
    await expectProblem(await post('/whep/errs/errs-pub', chromeWhepOffer(), { Authorization: 'Bearer not.a.jwt' }), 401);
    const otherRoom = await joinToken('elsewhere', 'v');
    await expectProblem(await post('/whep/errs/errs-pub', chromeWhepOffer(), { Authorization: `Bearer ${otherRoom}` }), 403);
    const noSub = await joinToken('errs', 'v', { canSubscribe: false });
    await expectProblem(await post('/whep/errs/errs-pub', chromeWhepOffer(), { Authorization: `Bearer ${noSub}` }), 403);
    const ok = await joinToken('errs', 'v');
    await expectProblem(await post('/whep/errs/errs-pub', chromeWhepOffer(), { Authorization: `Bearer ${ok}` }), 404, /not live|not in room/);
    await expectProblem(await post('/whep/errs/errs-pub', chromeWhepOffer(), { Authorization: `Bearer ${ok}`, 'Content-Type': 'text/plain' }), 415);
    await expectProblem(await post('/whep/errs', chromeWhepOffer(), { Authorization: `Bearer ${ok}` }), 404);
    await expectProblem(await fetch(`${gw.url}/whep/session/nope`, { method: 'DELETE' }), 404);
    const opt = await fetch(`${gw.url}/whep/errs/errs-pub`, { method: 'OPTIONS' });
    expect(opt.status).toBe(204);
    expect(opt.headers.get('accept-post')).toBe('application/sdp');
    await alive();
  });

  it('404 for a participant not in a live room; 422 for a sendonly offer', async () => {
    const pub = await whipPublish(`${gw.url}/w`, key, { video: 'VP8', audio: true });
    try {
      expect(pub.status).toBe(201);
      const ok = await joinToken('errs', 'v');
      await expectProblem(await post('/whep/errs/nobody', chromeWhepOffer(), { Authorization: `Bearer ${ok}` }), 404);
      await expectProblem(await post('/whep/errs/errs-pub', chromeWhipOffer(), { Authorization: `Bearer ${ok}` }), 422, /recvonly/);
      await expectProblem(await post('/whep/errs/errs-pub/TR_nope', chromeWhepOffer(), { Authorization: `Bearer ${ok}` }), 404);
      const good = await post('/whep/errs/errs-pub', chromeWhepOffer(), { Authorization: `Bearer ${ok}` });
      expect(good.status).toBe(201);
      expect(await good.text()).toMatch(/a=sendonly/);
      expect((await fetch(`${gw.url}${good.headers.get('location')}`, { method: 'DELETE' })).status).toBe(200);
      expect((await pub.stop()).status).toBe(200);
    } finally {
      await pub.close();
    }
    await alive();
  });
});

describe('WHIP offer fuzz', () => {
  it('1000 mutated offers: every answer is 201 or 4xx with problem+json, never 5xx, and the gateway stays up', async () => {
    const base = chromeWhipOffer();
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1000; i++) {
      const res = await post('/w', mutate(base, i), { Authorization: `Bearer ${key}` });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500) throw new Error(`mutation ${i} got ${res.status}: ${await res.text()}\n${mutate(base, i)}`);
      if (res.status === 201) {
        await res.text();
        const del = await fetch(new URL(res.headers.get('location')!, gw.url), { method: 'DELETE' });
        expect(del.status).toBe(200);
      } else {
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.headers.get('content-type')).toBe('application/problem+json');
        await res.text();
      }
    }
    expect(statuses.get(422) ?? 0).toBeGreaterThan(100);
    await alive();
  }, 240_000);
});
