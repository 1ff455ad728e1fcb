// Builds an EgressWorker from the one validated config: what workers/egress.ts runs, and what
// tests and benchmarks start in-process.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../../config.ts';
import { moduleLogger } from '../../logger.ts';
import { EgressWorker } from './EgressWorker.ts';

export function workerRedisUrl(config: Config): string {
  // Beside `npm start` without ROOMGATE_REDIS_URL, the gateway's local Redis child is the one to
  // use, with the password it keeps in the shared data dir.
  if (config.redis.url) return config.redis.url;
  const file = path.resolve(config.data_dir, 'redis', 'password');
  const password = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : '';
  return `redis://${password ? `:${password}@` : ''}127.0.0.1:${config.redis.embedded_port}`;
}

export function startEgressWorker(config: Config, overrides: { redisUrl?: string; gatewayUrl?: string } = {}): Promise<EgressWorker> {
  const webhookKey = config.webhook.api_key ?? Object.keys(config.keys)[0]!;
  return EgressWorker.start({
    redisUrl: overrides.redisUrl ?? workerRedisUrl(config),
    gatewayUrl: overrides.gatewayUrl ?? config.egress.gateway_url ?? `http://127.0.0.1:${config.port}`,
    egress: config.egress,
    webhook: { urls: config.webhook.urls, apiKey: webhookKey, apiSecret: config.keys[webhookKey]! },
    log: moduleLogger('egress-worker', { pid: process.pid }),
  });
}
