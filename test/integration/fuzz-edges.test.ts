// 1 000 seeded inputs per network edge (SIP, Twirp, /rtc, /agent, WHIP/WHEP, RTMP, internal egress API)
// against one gateway: no 5xx, no internal error, no hang, no crash, bounded memory. The same
// generators run 10 000+ per edge in `npm run fuzz` (scripts/fuzz.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/main.ts';
import { fuzzAll } from '../fuzz/edges.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { freeUdpPort } from '../helpers/sip.ts';

let redis: TestRedis;
let gw: Gateway;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({
    ROOMGATE_REDIS_URL: redis.url,
    ROOMGATE_RTMP_ENABLED: 'true',
    ROOMGATE_RTMP_PORT: String(await freePort()),
    ROOMGATE_SIP_ENABLED: 'true',
    ROOMGATE_SIP_PORT: String(await freeUdpPort()),
  });
});

afterAll(async () => {
  await gw?.close();
  await redis?.stop();
});

describe('edge fuzz (lean)', () => {
  it('answers 1 000 generated inputs per edge without a 5xx, hang, crash or memory growth', async () => {
    const reports = await fuzzAll(
      { url: gw.url, rtmpPort: gw.rtmpPort, sipPort: gw.sipPort, apiKey: API_KEY, apiSecret: API_SECRET, rss: () => process.memoryUsage().rss, alive: () => true },
      // RTMP's buffers for declared large messages take about 130 MB before RSS levels off (heap flat
      // under forced GC, README); 1 000 inputs end while it still climbs, so the lean run's bound sits
      // above that plateau. `npm run fuzz` (10 000 per edge) keeps the default 384 / 96 MB.
      { seed: 19, inputs: 1000, memoryBoundMb: 512 },
    );
    expect(reports.map((r) => r.edge)).toEqual(['sip', 'twirp', 'rtc', 'agent', 'whip-whep', 'rtmp', 'internal-egress']);
    for (const r of reports) {
      // Each edge was really exercised: its inputs got answers of more than one kind.
      expect(Object.keys(r.outcomes).length, `${r.edge} outcomes ${JSON.stringify(r.outcomes)}`).toBeGreaterThan(1);
    }
    // Spelled out, so a failure says what was found and with which input.
    expect(reports.flatMap((r) => r.findings.map((f) => `${f.edge} ${f.kind}: ${f.detail} [${f.input.slice(0, 120)}]`))).toEqual([]);
  }, 300_000);
});
