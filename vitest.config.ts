import { defineConfig } from 'vitest/config';
import { scaled } from './test/helpers/deadline.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The publisher matrix takes about N minutes: `npm run test:matrix` (vitest.matrix.config.ts).
    exclude: ['test/matrix/**', '**/node_modules/**'],
    setupFiles: ['test/setup.ts'],
    // Stretched on a loaded machine (test/helpers/deadline.ts), like every deadline in the tests.
    testTimeout: scaled(60_000),
    hookTimeout: scaled(60_000),
    pool: 'forks',
    // One file at a time: each file runs a gateway, mediasoup workers, Redis and several FFmpeg
    // encoders, and on a 2-core machine two such files starve each other's real-time media (the
    // recordings' duration checks and egress timeouts then fail for no fault of the code).
    maxWorkers: 1,
    reporters: ['default'],
  },
});
