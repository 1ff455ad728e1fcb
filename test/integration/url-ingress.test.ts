// URL input: the gateway pulls a file over HTTP and publishes it into the room, then completes.
// The source listener is on loopback, a special-use address: this gateway allow-lists 127.0.0.1
// (ingress.url_allow), and one without the allow-list must refuse it.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { IngressState_Status } from '@livekit/protocol';
import { IngressClient, IngressInput, RoomServiceClient, TwirpError, type IngressInfo } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { launchFfmpeg, runningFfmpegPids } from '../../src/media/ffmpeg.ts';
import { rejection } from '../helpers/errors.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let server: http.Server;
let base: string;
/** Paths the source listener was asked for. */
const requests: string[] = [];
let ingress: IngressClient;
let rooms: RoomServiceClient;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-url-'));

async function encode(name: string, args: string[]): Promise<void> {
  const ff = launchFfmpeg([...args, '-y', path.join(dir, name)]);
  expect(await ff.exited, ff.stderrTail()).toBe(0);
}

async function waitStatus(id: string, status: IngressState_Status): Promise<IngressInfo> {
  return waitFor(async () => {
    const [info] = await ingress.listIngress({ ingressId: id });
    return info?.state?.status === status ? info : undefined;
  }, 20_000, `ingress ${IngressState_Status[status]}`);
}

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_INGRESS_URL_ALLOW: '127.0.0.1' });
  ingress = new IngressClient(gw.url, API_KEY, API_SECRET);
  rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
  await encode('clip.mp4', [
    '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=sample_rate=48000', '-t', '4',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '0', '-g', '25', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-movflags', '+faststart',
  ]);
  await encode('clip.webm', ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '3', '-c:v', 'libvpx', '-deadline', 'realtime', '-b:v', '300k']);
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const file = path.join(dir, path.basename(req.url ?? ''));
    if (!fs.existsSync(file)) return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Length': fs.statSync(file).size });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
  await new Promise((r) => server?.close(r));
});

describe('URL ingress', () => {
  it('pulls an MP4 over HTTP, publishes H.264 passthrough + Opus, and completes at the end', async () => {
    const info = await ingress.createIngress(IngressInput.URL_INPUT, { roomName: 'url-room', participantIdentity: 'vod', url: `${base}/clip.mp4` });
    expect(info).toMatchObject({ url: `${base}/clip.mp4`, streamKey: '', reusable: false, inputType: IngressInput.URL_INPUT });
    const live = await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    expect(live.state!.resourceId).toMatch(/^UR_/);
    expect(live.state!.tracks.map((t) => t.mimeType).sort()).toEqual(['audio/opus', 'video/H264']);
    const withInput = (await ingress.listIngress({ ingressId: info.ingressId }))[0]!;
    expect(withInput.state!.video).toMatchObject({ mimeType: 'video/h264', width: 320, height: 240, framerate: 25 });
    expect(withInput.state!.audio).toMatchObject({ mimeType: 'audio/aac', sampleRate: 48000 });
    expect((await rooms.listParticipants('url-room')).map((p) => p.identity)).toEqual(['vod']);

    const done = await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_COMPLETE);
    expect(done.state!.endedAt).toBeGreaterThan(done.state!.startedAt);
    await waitFor(async () => ((await rooms.listParticipants('url-room')).length === 0 ? true : undefined), 5000, 'participant left');
    const updated = await rejection(ingress.updateIngress(info.ingressId, { name: 'again' }), TwirpError);
    expect(updated.code).toBe('failed_precondition');
  });

  it('re-encodes a source the room cannot take as it is (VP8 in WebM becomes H.264)', async () => {
    const info = await ingress.createIngress(IngressInput.URL_INPUT, { roomName: 'url-room-2', participantIdentity: 'webm', url: `${base}/clip.webm` });
    const live = await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    expect(live.state!.tracks.map((t) => t.mimeType)).toEqual(['video/H264']);
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_COMPLETE);
  });

  it('reports an unreachable source as ERROR, and DeleteIngress stops a running pull', async () => {
    const missing = await ingress.createIngress(IngressInput.URL_INPUT, { roomName: 'url-room-3', participantIdentity: 'gone', url: `${base}/missing.mp4` });
    const failed = await waitStatus(missing.ingressId, IngressState_Status.ENDPOINT_ERROR);
    // What answered (a 404 here) stays in the server log: the caller learns nothing about the host.
    expect(failed.state!.error).toBe('could not open the input');

    const info = await ingress.createIngress(IngressInput.URL_INPUT, { roomName: 'url-room-3', participantIdentity: 'long', url: `${base}/clip.mp4` });
    await waitStatus(info.ingressId, IngressState_Status.ENDPOINT_PUBLISHING);
    await ingress.deleteIngress(info.ingressId);
    await waitFor(async () => ((await rooms.listParticipants('url-room-3')).length === 0 ? true : undefined), 5000, 'participant left');
    await waitFor(() => (runningFfmpegPids().length === 0 ? true : undefined), 10_000, 'no FFmpeg running');
  });
});

describe('URL ingress target policy', () => {
  it('refuses a loopback source unless ingress.url_allow lists it, with a generic error', async () => {
    const strict = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
    try {
      const client = new IngressClient(strict.url, API_KEY, API_SECRET);
      const before = requests.length;
      const refused = await client.createIngress(IngressInput.URL_INPUT, { roomName: 'url-strict', participantIdentity: 'x', url: `${base}/clip.mp4?via=strict` });
      const failed = await waitFor(async () => {
        const [i] = await client.listIngress({ ingressId: refused.ingressId });
        return i?.state?.status === IngressState_Status.ENDPOINT_ERROR ? i : undefined;
      }, 20_000, 'refused ingress ERROR');
      expect(failed.state!.error).toBe('could not open the input');
      // Nothing reached the listener: the refusal happened before any connection.
      expect(requests.slice(before).filter((r) => r.includes('via=strict'))).toEqual([]);

      // localhost, the IPv6 loopback and an IPv4-mapped loopback are the same host.
      const port = (server.address() as AddressInfo).port;
      const urls = [`http://localhost:${port}/clip.mp4?via=strict`, `http://[::ffff:127.0.0.1]:${port}/clip.mp4?via=strict`, `https://[::1]:${port}/clip.mp4`];
      for (const [n, url] of urls.entries()) {
        const other = await client.createIngress(IngressInput.URL_INPUT, { roomName: 'url-strict', participantIdentity: `y${n}`, url });
        const err = await waitFor(async () => {
          const [i] = await client.listIngress({ ingressId: other.ingressId });
          return i?.state?.status === IngressState_Status.ENDPOINT_ERROR ? i.state.error : undefined;
        }, 20_000, `${url} refused`);
        expect(err).toBe('could not open the input');
      }
      expect(requests.slice(before).filter((r) => r.includes('via=strict'))).toEqual([]);
    } finally {
      await strict.close();
    }
  });

  it('answers resource_exhausted past ingress.url_max_sessions', async () => {
    const capped = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_INGRESS_URL_ALLOW: '127.0.0.0/8', ROOMGATE_INGRESS_URL_MAX_SESSIONS: '1' });
    try {
      const client = new IngressClient(capped.url, API_KEY, API_SECRET);
      const first = await client.createIngress(IngressInput.URL_INPUT, { roomName: 'url-cap', participantIdentity: 'one', url: `${base}/clip.mp4` });
      const second = await rejection(client.createIngress(IngressInput.URL_INPUT, { roomName: 'url-cap', participantIdentity: 'two', url: `${base}/clip.mp4` }), TwirpError);
      expect(second.code).toBe('resource_exhausted');
      expect(second.message).toMatch(/ingress\.url_max_sessions/);
      await client.deleteIngress(first.ingressId);
    } finally {
      await capped.close();
    }
  });
});
