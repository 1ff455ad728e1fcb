#!/usr/bin/env node
// Entry point of the `roomgate` command. Runs the TypeScript sources through tsx, so a clone
// needs no build step: `npm ci && npm start`.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
