// `npm run test:faults`: fault injection (SIGKILLed and drained workers, S3 down, Redis restarted
// mid-job), run after `npm test` by `.ci/run`. Kept out of `npm test` for its length: each test waits
// out real recordings, BullMQ's stalled-job detection and S3 retries (about 2 minutes together).
import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

// Spread, not mergeConfig: that concatenates arrays, and the base excludes test/faults.
export default defineConfig({ ...base, test: { ...base.test, include: ['test/faults/**/*.test.ts'], exclude: ['**/node_modules/**'] } });
