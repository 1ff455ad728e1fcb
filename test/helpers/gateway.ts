// Starts a real gateway in this process with its own ports and Redis; the test closes it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { startGateway, type Gateway } from '../../src/main.ts';
import { scaled } from './deadline.ts';
import { freePort } from './net.ts';

export const API_KEY = 'APItestkey';
export const API_SECRET = 'test-secret-that-is-long-enough-0123456789';
/**
 * Options for the SDK's clients in tests: its 10 s request timeout stretched by the load factor. The
 * gateway runs in the test's own process, so a starved machine slows its answers with the test's.
 */
export const SDK_OPTIONS = { requestTimeout: scaled(10_000) / 1000 };

export async function startTestGateway(env: Record<string, string> = {}): Promise<Gateway> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-test-'));
  const config = loadConfig({
    env: {
      ROOMGATE_PORT: String(await freePort()),
      ROOMGATE_DATA_DIR: dataDir,
      ROOMGATE_RTC_WORKERS: '1',
      ROOMGATE_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      ROOMGATE_API_KEY: API_KEY,
      ROOMGATE_API_SECRET: API_SECRET,
      // node-media-server allows one RTMP server per process; tests that push RTMP turn it on.
      ROOMGATE_RTMP_ENABLED: 'false',
      // Egress tests start their workers themselves (in-process or as a child they can kill).
      ROOMGATE_EGRESS_WORKER: 'false',
      ...env,
    },
  });
  return startGateway(config);
}
