// WHIP publishers (werift in Node, media from FFmpeg) into a room: a room participant receives and
// decodes both tracks, IngressInfo goes BUFFERING → PUBLISHING → INACTIVE with webhooks, DELETE makes
// the ingress participant leave; ICE restart and trickle PATCHes on the session; WHEP playback.
import { IngressState_Status } from '@livekit/protocol';
import { IngressClient, IngressInput } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RemoteTrack } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { join, joinToken, nextEvent } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';
import { rtpDecoder, whipPublish, type WhipPublisher } from '../helpers/whip.ts';

let redis: TestRedis;
let gw: Gateway;
let sink: WebhookSink;
let ingress: IngressClient;
const cleanup: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  sink = await startWebhookSink();
  gw = await startTestGateway({
    ROOMGATE_REDIS_URL: redis.url,
    ROOMGATE_WEBHOOK_URLS: sink.url,
    ROOMGATE_STUN_URLS: 'stun:stun.example.com:3478',
    ROOMGATE_TURN_URLS: 'turn:turn.example.com:3478?transport=udp',
    ROOMGATE_TURN_SECRET: 'turn-secret',
  });
  ingress = new IngressClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  await gw?.close();
  await sink?.close();
  await redis?.stop();
});

async function statusOf(ingressId: string): Promise<IngressState_Status | undefined> {
  const [info] = await ingress.listIngress({ ingressId });
  return info?.state?.status;
}

/** Decodes `frames` frames of a received track with FFmpeg (payload type from the first packet). */
async function decodes(track: RemoteTrack, codec: string, frames: number): Promise<number> {
  const port = await freePort();
  let decoder: Awaited<ReturnType<typeof rtpDecoder>> | undefined;
  let starting: Promise<unknown> | undefined;
  const sub = track.track.onReceiveRtp.subscribe((rtp) => {
    if (!starting) {
      starting = rtpDecoder({ kind: track.kind, payloadType: rtp.header.payloadType, codec, frames, port }).then((d) => (decoder = d));
      return;
    }
    decoder?.push(rtp);
  });
  try {
    await waitFor(() => decoder, 15_000, `first ${track.kind} RTP`);
    const timer = setTimeout(() => {
      decoder!.stop().catch((err: unknown) => console.error('stopping the decoder failed', err));
    }, 30_000);
    const n = await decoder!.done();
    clearTimeout(timer);
    return n;
  } finally {
    sub.unSubscribe();
  }
}

function webhookEvents(): { event: string; status?: IngressState_Status; ingressId?: string }[] {
  return sink.received.map((r) => {
    const e = JSON.parse(r.body) as { event: string; ingressInfo?: { ingressId: string; state?: { status?: string } } };
    const status = e.ingressInfo?.state?.status;
    return {
      event: e.event,
      ...(e.ingressInfo ? { ingressId: e.ingressInfo.ingressId } : {}),
      ...(status !== undefined ? { status: IngressState_Status[status as keyof typeof IngressState_Status] } : {}),
    };
  });
}

describe('WHIP ingress', () => {
  it('publishes VP8 + Opus from werift into the room: a participant receives and decodes both; DELETE makes it leave', async () => {
    const info = await ingress.createIngress(IngressInput.WHIP_INPUT, {
      name: 'whip-vp8',
      roomName: 'whip-room',
      participantIdentity: 'whip-pub',
      participantName: 'WHIP Publisher',
      participantMetadata: '{"src":"werift"}',
    });
    expect(info.url).toBe(`${gw.url}/w`);
    const viewer = await join(gw.url, 'whip-room', 'viewer', { canPublish: false });
    cleanup.push(() => viewer.leave());

    const subscribed: RemoteTrack[] = [];
    viewer.on('trackSubscribed', (t) => subscribed.push(t));
    const pub: WhipPublisher = await whipPublish(info.url, info.streamKey, { video: 'VP8' });
    cleanup.push(() => pub.close());
    expect(pub.status).toBe(201);
    expect(pub.location).toMatch(new RegExp(`^${gw.url}/w/session/[A-Za-z0-9_-]{22,}$`));
    expect(pub.etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    expect(pub.answer).toMatch(/^v=0\r\n/);
    expect(pub.answer).toContain('a=ice-lite');
    expect(pub.answer).toContain('a=setup:passive');
    expect(pub.answer).toMatch(/a=recvonly/);
    expect(pub.links).toContain('<stun:stun.example.com:3478>; rel="ice-server"');
    expect(pub.links).toMatch(/<turn:turn\.example\.com:3478\?transport=udp>; rel="ice-server"; username="\d+:whip-pub"; credential="[^"]+"; credential-type="password"/);

    await waitFor(() => subscribed.length === 2 || undefined, 20_000, 'both WHIP tracks at the viewer');
    expect(subscribed.every((t) => t.participantIdentity === 'whip-pub')).toBe(true);
    const joined = viewer.participants.get('whip-pub') as { name?: string; metadata?: string; kind?: string } | undefined;
    expect(joined).toMatchObject({ name: 'WHIP Publisher', metadata: '{"src":"werift"}' });

    const video = subscribed.find((t) => t.kind === 'video')!;
    const audio = subscribed.find((t) => t.kind === 'audio')!;
    const [vFrames, aFrames] = await Promise.all([decodes(video, 'VP8', 20), decodes(audio, 'opus', 50)]);
    expect(vFrames).toBe(20);
    expect(aFrames).toBe(50);

    await waitFor(async () => ((await statusOf(info.ingressId)) === IngressState_Status.ENDPOINT_PUBLISHING ? true : undefined), 10_000, 'PUBLISHING');
    const [live] = await ingress.listIngress({ ingressId: info.ingressId });
    expect(live!.state!.resourceId).toMatch(/^WH_/);
    expect(live!.state!.tracks.map((t) => t.sid).sort()).toEqual(subscribed.map((t) => t.trackSid).sort());

    const left = nextEvent(viewer, 'participantDisconnected', (id) => id === 'whip-pub', 15_000);
    const del = await pub.stop();
    expect(del.status).toBe(200);
    await left;
    await waitFor(async () => ((await statusOf(info.ingressId)) === IngressState_Status.ENDPOINT_INACTIVE ? true : undefined), 10_000, 'INACTIVE');
    // The session URL is gone.
    expect((await fetch(pub.location, { method: 'DELETE' })).status).toBe(404);
    await waitFor(() => {
      const mine = webhookEvents().filter((e) => e.ingressId === info.ingressId);
      return mine.some((e) => e.event === 'ingress_ended') ? mine : undefined;
    }, 10_000, 'ingress webhooks');
    const mine = webhookEvents().filter((e) => e.ingressId === info.ingressId).map((e) => e.event);
    expect(mine).toEqual(['ingress_started', 'ingress_ended']);
  });

  it('publishes H.264 to /w/<stream key> (no Authorization header); ICE restart and trickle PATCHes work', async () => {
    const info = await ingress.createIngress(IngressInput.WHIP_INPUT, { name: 'whip-h264', roomName: 'whip-h264', participantIdentity: 'h264-pub' });
    const viewer = await join(gw.url, 'whip-h264', 'viewer2', { canPublish: false });
    cleanup.push(() => viewer.leave());
    const got = nextEvent(viewer, 'trackSubscribed', (t) => t.kind === 'video', 20_000);
    const pub = await whipPublish(`${info.url}/${info.streamKey}`, undefined, { video: 'H264', audio: false });
    cleanup.push(() => pub.close());
    expect(pub.status).toBe(201);
    const [video] = await got;
    expect(await decodes(video, 'H264', 20)).toBe(20);

    // Trickle: 204, no ETag change.
    const trickle = await fetch(pub.location, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': pub.etag! },
      body: 'a=mid:0\r\na=candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host\r\n',
    });
    expect(trickle.status).toBe(204);
    // Stale ETag: 412.
    const stale = await fetch(pub.location, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '"nope"' }, body: 'a=end-of-candidates\r\n' });
    expect(stale.status).toBe(412);
    expect(stale.headers.get('content-type')).toBe('application/problem+json');
    // Restart without If-Match: 428; with If-Match "*": 200, sdpfrag with new credentials, new ETag.
    const frag = 'a=ice-ufrag:newufrag\r\na=ice-pwd:newpassword0123456789abcd\r\n';
    const noMatch = await fetch(pub.location, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: frag });
    expect(noMatch.status).toBe(428);
    const restart = await fetch(pub.location, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' }, body: frag });
    expect(restart.status).toBe(200);
    expect(restart.headers.get('content-type')).toBe('application/trickle-ice-sdpfrag');
    const body = await restart.text();
    expect(body).toMatch(/a=ice-ufrag:\S+/);
    expect(body).toMatch(/a=candidate:.* typ host/);
    expect(restart.headers.get('etag')).not.toBe(pub.etag);
    const old = pub.answer.match(/a=ice-ufrag:(\S+)/)![1];
    expect(body.match(/a=ice-ufrag:(\S+)/)![1]).not.toBe(old);
    const staleNow = await fetch(pub.location, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': pub.etag! }, body: 'a=end-of-candidates\r\n' });
    expect(staleNow.status).toBe(412);

    // GET and OPTIONS on the session.
    expect((await fetch(pub.location)).status).toBe(204);
    const opt = await fetch(pub.location, { method: 'OPTIONS' });
    expect(opt.status).toBe(204);
    expect(opt.headers.get('accept-patch')).toBe('application/trickle-ice-sdpfrag');

    const left = nextEvent(viewer, 'participantDisconnected', (id) => id === 'h264-pub', 15_000);
    expect((await pub.stop()).status).toBe(200);
    await left;
  });

  it('a second publisher on the same key replaces the first (OBS reconnect)', async () => {
    const info = await ingress.createIngress(IngressInput.WHIP_INPUT, { name: 'whip-re', roomName: 'whip-re', participantIdentity: 're-pub' });
    const first = await whipPublish(info.url, info.streamKey, { audio: true, video: false });
    cleanup.push(() => first.close());
    expect(first.status).toBe(201);
    const second = await whipPublish(info.url, info.streamKey, { audio: true, video: false });
    cleanup.push(() => second.close());
    expect(second.status).toBe(201);
    expect((await fetch(first.location, { method: 'DELETE' })).status).toBe(404);
    await waitFor(async () => ((await statusOf(info.ingressId)) === IngressState_Status.ENDPOINT_PUBLISHING ? true : undefined), 15_000, 'PUBLISHING');
    expect((await second.stop()).status).toBe(200);
    await first.close();
  });

  it('WHEP: a Node viewer plays the WHIP publisher\'s video through /whep/<room>/<identity>', async () => {
    const info = await ingress.createIngress(IngressInput.WHIP_INPUT, { name: 'whep-src', roomName: 'whep-room', participantIdentity: 'cam' });
    const pub = await whipPublish(info.url, info.streamKey, { video: 'VP8' });
    cleanup.push(() => pub.close());
    expect(pub.status).toBe(201);
    await waitFor(async () => ((await statusOf(info.ingressId)) === IngressState_Status.ENDPOINT_PUBLISHING ? true : undefined), 15_000, 'PUBLISHING');

    const { RTCPeerConnection } = await import('werift');
    const pc = new RTCPeerConnection();
    cleanup.push(() => pc.close());
    const video = pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    let packets = 0;
    video.onTrack.subscribe((track) => track.onReceiveRtp.subscribe(() => packets++));
    await pc.setLocalDescription(await pc.createOffer());
    const token = await joinToken('whep-room', 'whep-viewer', { canSubscribe: true });
    const res = await fetch(`${gw.url}/whep/whep-room/cam`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` }, body: pc.localDescription!.sdp });
    if (res.status !== 201) console.error(await res.text());
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toMatch(/^\/whep\/session\/[A-Za-z0-9_-]{22,}$/);
    const answer = await res.text();
    expect(answer).toContain('a=sendonly');
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await waitFor(() => (packets > 50 ? true : undefined), 20_000, 'WHEP video RTP');
    expect((await fetch(`${gw.url}${res.headers.get('location')}`, { method: 'DELETE' })).status).toBe(200);
    expect((await fetch(`${gw.url}${res.headers.get('location')}`, { method: 'DELETE' })).status).toBe(404);
    expect((await pub.stop()).status).toBe(200);
  });
});
