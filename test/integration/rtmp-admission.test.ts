// RTMP connections before the key check (issue 19, finding 2): idle sockets must not lock
// publishers out. A valid publisher gets through while 64 idle sockets from its own address are
// open, one address cannot hold more than its share, and silent sockets are closed early.
import net from 'node:net';
import { IngressState_Status } from '@livekit/protocol';
import { IngressClient, IngressInput } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { launchFfmpeg, type FfmpegProcess } from '../../src/media/ffmpeg.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let ingress: IngressClient;
const sockets: net.Socket[] = [];
let publisher: FfmpegProcess | undefined;

/** An idle TCP connection to the RTMP port from `from`; resolves once connected. */
function idle(from = '127.0.0.1'): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: gw.rtmpPort, host: '127.0.0.1', localAddress: from });
    sockets.push(socket);
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => undefined); // a reset by the server is what some tests wait for
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({
    ROOMGATE_REDIS_URL: redis.url,
    ROOMGATE_RTMP_ENABLED: 'true',
    ROOMGATE_RTMP_PORT: String(await freePort()),
    // Long enough that only eviction (not the deadline) can free slots within a test.
    ROOMGATE_RTMP_FIRST_BYTES_TIMEOUT: '60',
    ROOMGATE_RTMP_PUBLISH_TIMEOUT: '120',
  });
  ingress = new IngressClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  await publisher?.stop();
  for (const s of sockets) s.destroy();
  await gw?.close();
  await redis?.stop();
});

describe('RTMP admission', () => {
  it('lets a valid publisher in while 64 idle sockets from its own address are open', async () => {
    const held = await Promise.all(Array.from({ length: 64 }, () => idle()));
    // Give the server time to register all of them before the publisher arrives.
    await new Promise((r) => setTimeout(r, 300));
    const info = await ingress.createIngress(IngressInput.RTMP_INPUT, { roomName: 'adm', participantIdentity: 'pub' });
    publisher = launchFfmpeg([
      '-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15', '-t', '30',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '0', '-g', '15', '-pix_fmt', 'yuv420p',
      '-f', 'flv', `rtmp://127.0.0.1:${gw.rtmpPort}/live/${info.streamKey}`,
    ]);
    const early = publisher.exited.then((code) => `ffmpeg exited with ${code}: ${publisher!.stderrTail()}`);
    const live = waitFor(async () => {
      const [i] = await ingress.listIngress({ ingressId: info.ingressId });
      return i?.state?.status === IngressState_Status.ENDPOINT_PUBLISHING ? 'publishing' : undefined;
    }, 30_000, 'publishing');
    expect(await Promise.race([live, early])).toBe('publishing');
    await publisher.stop();
    publisher = undefined;
    for (const h of held) h.socket.destroy();
  });

  it('keeps one address to its share of pending slots: its oldest connection is evicted', async () => {
    // 127.0.0.2 is loopback too; the default share is 8 per address.
    const first = await idle('127.0.0.2');
    const rest = await Promise.all(Array.from({ length: 7 }, () => idle('127.0.0.2')));
    const otherAddress = await idle('127.0.0.3');
    let firstClosed = false;
    first.closed.then(() => (firstClosed = true)).catch(() => (firstClosed = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(firstClosed).toBe(false);
    await idle('127.0.0.2'); // the ninth
    const within = (ms: number) => new Promise<string>((r) => setTimeout(() => r('still open'), ms));
    expect(await Promise.race([first.closed.then(() => 'closed'), within(10_000)])).toBe('closed');
    // The other address's connection is untouched.
    expect(otherAddress.socket.destroyed).toBe(false);
    for (const h of [...rest, otherAddress]) h.socket.destroy();
  });
});

describe('RTMP first-bytes deadline', () => {
  it('closes a connection that sends nothing within rtmp.first_bytes_timeout, long before the publish deadline', async () => {
    // One RTMP server per process: this file's gateway makes way for one with a 1 s deadline.
    await gw.close();
    gw = await startTestGateway({
      ROOMGATE_REDIS_URL: redis.url,
      ROOMGATE_RTMP_ENABLED: 'true',
      ROOMGATE_RTMP_PORT: String(await freePort()),
      ROOMGATE_RTMP_FIRST_BYTES_TIMEOUT: '1',
      ROOMGATE_RTMP_PUBLISH_TIMEOUT: '120',
    });
    const silent = await idle();
    const talking = await idle();
    talking.socket.write(Buffer.concat([Buffer.from([3]), Buffer.alloc(1536)])); // C0 + C1
    const within = (ms: number) => new Promise<string>((r) => setTimeout(() => r('still open'), ms));
    // 1 s asked; 8 s allows for a loaded machine and stays below any publish deadline (120 s here).
    expect(await Promise.race([silent.closed.then(() => 'closed'), within(8000)])).toBe('closed');
    expect(talking.socket.destroyed).toBe(false);
    talking.socket.destroy();
  });
});
