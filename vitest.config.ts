import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One file at a time: each file runs a gateway, mediasoup workers, Redis and several FFmpeg
    // encoders, and on a 2-core machine two such files starve each other's real-time media (the
    // recordings' duration checks and egress timeouts then fail for no fault of the code).
    maxWorkers: 1,
    reporters: ['default'],
  },
});
