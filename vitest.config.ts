import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores here: more parallel files only fight over them (mediasoup workers, redis, ffmpeg).
    maxWorkers: 2,
    reporters: ['default'],
  },
});
