import { defineConfig } from 'vitest/config';
import { scaled } from './test/helpers/deadline.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The publisher matrix (`npm run test:matrix`, vitest.matrix.config.ts) and the fault tests
    // (`npm run test:faults`, vitest.faults.config.ts; .ci/run runs them after this suite).
    exclude: ['test/matrix/**', 'test/faults/**', '**/node_modules/**'],
    setupFiles: ['test/setup.ts'],
    // Stretched on a loaded machine (test/helpers/deadline.ts), like every deadline in the tests.
    testTimeout: scaled(60_000),
    hookTimeout: scaled(60_000),
    pool: 'forks',
    // One file at a time: each file runs a gateway, mediasoup workers, Redis and several FFmpeg
    // encoders, and on a 2-core machine two such files starve each other's real-time media (the
    // recordings' duration checks and egress timeouts then fail for no fault of the code).
    maxWorkers: 1,
    // One fork runs every file in turn with its module cache kept (test/setup.ts still runs before
    // each file): importing the gateway's modules once instead of 66 times cut the suite from 580 s
    // to 511 s here, every file passing. A file must therefore leave no process-wide state behind,
    // which its own afterAll (gateway, Redis, FFmpeg) and test/setup.ts's checks already require.
    isolate: false,
    reporters: ['default'],
  },
});
