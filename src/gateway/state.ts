// Phase 1 of startGateway: the shared state, Redis (an embedded one when no URL is configured).
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { moduleLogger } from '../logger.ts';
import { startEmbeddedRedis } from '../store/embeddedRedis.ts';
import { connectRedis, evictionPolicyWarning, redactUrl } from '../store/redis.ts';
import type { Shutdown } from './shutdown.ts';

export interface GatewayState {
  redis: Redis;
  redisUrl: string;
}

export async function openState(config: Config, log: Logger, shutdown: Shutdown): Promise<GatewayState> {
  let redisUrl = config.redis.url;
  if (!redisUrl) {
    const embedded = await startEmbeddedRedis({
      dataDir: config.data_dir,
      port: config.redis.embedded_port,
      log: moduleLogger('redis'),
    });
    shutdown.at('embedded redis', () => embedded.stop());
    redisUrl = embedded.url;
  }
  const redis = await connectRedis(redisUrl);
  shutdown.at('redis', async () => {
    await redis.quit().catch(() => redis.disconnect());
  });
  const policyWarning = await evictionPolicyWarning(redis);
  if (policyWarning) log.warn({ redis: redactUrl(redisUrl) }, policyWarning);
  return { redis, redisUrl };
}
