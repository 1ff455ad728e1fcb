// One egress test file's stack, started in beforeAll and stopped in afterAll (vitest hooks: test
// files only; the benches share test/helpers/egress.ts and must not load vitest).
import { EgressClient, S3Upload } from 'livekit-server-sdk';
import { afterAll, beforeAll } from 'vitest';
import type { NodeParticipant } from '../../src/client/node.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import { startS3, type TestS3 } from './egress.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from './gateway.ts';
import { startRedis, type TestRedis } from './redis.ts';

/** What an egress test file runs against: Redis, S3, one gateway and its EgressClient. */
export interface EgressStack {
  redis: TestRedis;
  s3: TestS3;
  gw: Gateway;
  egress: EgressClient;
  /** Workers and participants the file starts: closed and left in afterAll, before the gateway. */
  workers: EgressWorker[];
  participants: NodeParticipant[];
  /** An S3 destination in the stack's bucket. */
  toS3(): { case: 's3'; value: S3Upload };
}

/**
 * Starts the stack in beforeAll and stops it in afterAll (participants, workers, gateway, S3,
 * Redis); the returned object is filled in once beforeAll has run.
 */
export function useEgressStack(): EgressStack {
  const stack = {
    workers: [] as EgressWorker[],
    participants: [] as NodeParticipant[],
    toS3: () => ({ case: 's3' as const, value: new S3Upload({ ...stack.s3.settings }) }),
  } as EgressStack;
  beforeAll(async () => {
    stack.redis = await startRedis();
    stack.s3 = await startS3();
    stack.gw = await startTestGateway({ ROOMGATE_REDIS_URL: stack.redis.url });
    stack.egress = new EgressClient(stack.gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
  });
  afterAll(async () => {
    await Promise.all(stack.participants.map((p) => p.leave().catch(() => undefined)));
    for (const w of stack.workers) await w.close();
    await stack.gw?.close();
    await stack.s3?.stop();
    await stack.redis?.stop();
  });
  return stack;
}
