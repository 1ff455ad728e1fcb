// The worker binary installed by scripts/build-mediasoup-worker.mjs runs: a real Worker and Router.
import { afterAll, describe, expect, it } from 'vitest';
import * as mediasoup from 'mediasoup';
import { moduleLogger } from '../../src/logger.ts';
import { WorkerPool } from '../../src/sfu/WorkerPool.ts';
import { isAlive } from '../helpers/net.ts';

describe('mediasoup', () => {
  let pool: WorkerPool | undefined;
  afterAll(() => pool?.close());

  it('creates a Worker and a Router with Opus, VP8 and H.264', async () => {
    const worker = await mediasoup.createWorker({ logLevel: 'warn' });
    const router = await worker.createRouter({
      mediaCodecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }],
    });
    expect(router.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(isAlive(worker.pid)).toBe(true);
    worker.close();
    expect(router.closed).toBe(true);
  });

  it('spreads routers over a pool, splitting the RTC port range', async () => {
    pool = await WorkerPool.create({ count: 2, rtcMinPort: 41000, rtcMaxPort: 41999, log: moduleLogger('test') });
    expect(pool.workerPids).toHaveLength(2);
    const routers = await Promise.all([pool.createRouter(), pool.createRouter()]);
    const mimeTypes = routers[0]!.rtpCapabilities.codecs!.map((c) => c.mimeType);
    expect(mimeTypes).toEqual(expect.arrayContaining(['audio/opus', 'video/VP8', 'video/H264']));
    const h264 = routers[0]!.rtpCapabilities.codecs!.find((c) => c.mimeType === 'video/H264')!;
    expect(h264.parameters).toMatchObject({ 'packetization-mode': 1, 'profile-level-id': '42e01f' });
    // A transport on each router takes a port from its own worker's half of the range.
    const ports = await Promise.all(
      routers.map(async (r) => {
        const t = await r.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true });
        return t.tuple.localPort;
      }),
    );
    expect(ports.some((p) => p >= 41000 && p <= 41499)).toBe(true);
    expect(ports.some((p) => p >= 41500 && p <= 41999)).toBe(true);
  });

  it('counts consumers per worker and places receivers past the budget on the least-loaded worker', async () => {
    const p = await WorkerPool.create({ count: 2, rtcMinPort: 42100, rtcMaxPort: 42199, consumersPerWorker: 1, log: moduleLogger('test') });
    try {
      const origin = await p.createRouter();
      const home = p.workerPidOf(origin)!;
      const other = p.workerPids.find((pid) => pid !== home)!;
      expect(p.receiverWorker(origin)).toBe(home);
      const ingest = await origin.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: true });
      const producer = await ingest.produce({
        kind: 'audio',
        rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 1111 }] },
      });
      const out = await origin.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true });
      const consumer = await out.consume({ producerId: producer.id, rtpCapabilities: origin.rtpCapabilities });
      expect(p.load.find((l) => l.pid === home)?.consumers).toBe(1);
      // At the budget: the other worker, which has none.
      expect(p.receiverWorker(origin)).toBe(other);
      const overflow = await p.createRouterOn(other, { overflow: true });
      expect(p.workerPidOf(overflow)).toBe(other);
      await origin.pipeToRouter({ producerId: producer.id, router: overflow });
      // The pipe consumer counts on the room's worker: piping costs it too.
      expect(p.load.find((l) => l.pid === home)?.consumers).toBe(2);
      consumer.close();
      overflow.close();
      expect(p.load.find((l) => l.pid === home)?.consumers).toBe(0);
      expect(p.receiverWorker(origin)).toBe(home);
      await expect(p.createRouterOn(123456789)).rejects.toThrow(/not running/);
    } finally {
      p.close();
    }
  });

  it('replaces a worker that dies', async () => {
    const p = await WorkerPool.create({ count: 1, rtcMinPort: 42000, rtcMaxPort: 42099, log: moduleLogger('test') });
    try {
      const [pid] = p.workerPids;
      process.kill(pid!, 'SIGKILL');
      const deadline = Date.now() + 10_000;
      while ((p.workerPids[0] ?? pid) === pid && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(p.workerPids).toHaveLength(1);
      expect(p.workerPids[0]).not.toBe(pid);
      await expect(p.createRouter()).resolves.toBeDefined();
    } finally {
      p.close();
    }
  });
});
