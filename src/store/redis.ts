// Connection to Redis: the one place that knows how roomgate talks to it.
import { Redis } from 'ioredis';

/**
 * Opens a connection and proves it with PING. Commands fail fast while Redis is away (the API then
 * answers `unavailable`) instead of queueing for minutes; ioredis keeps reconnecting in the background.
 */
export async function connectRedis(url: string, name = 'roomgate'): Promise<Redis> {
  const redis = new Redis(url, {
    connectionName: name,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    commandTimeout: 5000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  // Errors surface on the commands that fail; without a listener ioredis would print each reconnect attempt.
  redis.on('error', () => {});
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${(err as Error).message}`);
  }
  return redis;
}

/**
 * BullMQ (the egress queue) needs `maxmemory-policy noeviction`: a Redis that evicts keys under
 * memory pressure silently loses queued jobs and their locks. Returns a warning to log when the
 * server says otherwise (INFO rather than CONFIG GET, which managed services often disable), or
 * undefined when the policy is right or cannot be read.
 */
export async function evictionPolicyWarning(redis: Redis): Promise<string | undefined> {
  const info = await redis.info('memory').catch(() => '');
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (!policy || policy === 'noeviction') return undefined;
  return `Redis maxmemory-policy is '${policy}': set it to 'noeviction' (BullMQ's egress queue loses jobs when keys are evicted)`;
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
