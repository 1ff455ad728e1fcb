// BullMQ needs `maxmemory-policy noeviction` (issue 19, finding 8): the gateway warns at start
// when its Redis evicts keys.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evictionPolicyWarning } from '../../src/store/redis.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

describe('Redis eviction policy check', () => {
  it('is quiet for noeviction and names the policy otherwise', async () => {
    await client.config('SET', 'maxmemory-policy', 'noeviction');
    expect(await evictionPolicyWarning(client)).toBeUndefined();
    await client.config('SET', 'maxmemory-policy', 'allkeys-lru');
    expect(await evictionPolicyWarning(client)).toMatch(/maxmemory-policy is 'allkeys-lru': set it to 'noeviction'/);
  });
});
