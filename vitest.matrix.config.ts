// `npm run test:matrix`: the publisher matrix (test/matrix), kept out of `npm test` for its length.
import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

// Spread, not mergeConfig: that concatenates arrays, and the base excludes test/matrix.
export default defineConfig({ ...base, test: { ...base.test, include: ['test/matrix/**/*.test.ts'], exclude: ['**/node_modules/**'] } });
