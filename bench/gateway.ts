// A gateway for one bench suite: in this process, on its own Redis, ports and data dir, one
// mediasoup worker (so its CPU is one PID to read), logs off, RTMP and egress workers only when a
// suite asks for them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { startGateway, type Gateway } from '../src/main.ts';
import { freePort } from '../test/helpers/net.ts';
import { startRedis } from '../test/helpers/redis.ts';

/** How a suite reports one figure to the bench's table (bench/run.ts). */
export type Recorder = (name: string, value: number, unit: string, note?: string) => void;

export const BENCH_KEY = 'APIbench';
export const BENCH_SECRET = 'bench-secret-0123456789-0123456789-xx';

export interface BenchGateway {
  gw: Gateway;
  close(): Promise<void>;
}

export async function startBenchGateway(env: Record<string, string> = {}): Promise<BenchGateway> {
  const redis = await startRedis();
  try {
    const gw = await startGateway(
      loadConfig({
        env: {
          ROOMGATE_PORT: String(await freePort()),
          ROOMGATE_REDIS_URL: redis.url,
          ROOMGATE_RTMP_ENABLED: 'false',
          // No egress worker child: its CPU would be counted in no column and disturb every one.
          ROOMGATE_EGRESS_WORKER: 'false',
          ROOMGATE_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-bench-')),
          ROOMGATE_LOG_LEVEL: 'silent',
          ROOMGATE_RTC_WORKERS: '1',
          ROOMGATE_API_KEY: BENCH_KEY,
          ROOMGATE_API_SECRET: BENCH_SECRET,
          ...env,
        },
      }),
    );
    return {
      gw,
      async close() {
        await gw.close();
        await redis.stop();
      },
    };
  } catch (err) {
    await redis.stop();
    throw err;
  }
}
