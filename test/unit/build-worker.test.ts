// scripts/build-mediasoup-worker.mjs: the cache hit path and MEDIASOUP_WORKER_BIN, without a 3-minute build.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SCRIPT = path.resolve('scripts/build-mediasoup-worker.mjs');

function fakeMediasoup(version: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-mediasoup-'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'mediasoup', version }));
  fs.mkdirSync(path.join(dir, 'worker'));
  return dir;
}

function run(msDir: string, env: Record<string, string>) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'MEDIASOUP_WORKER_BIN'));
  return spawnSync(process.execPath, [SCRIPT, msDir], { env: { ...base, ...env }, encoding: 'utf8' });
}

describe('mediasoup worker install step', () => {
  it('installs a cached binary keyed by version, platform and arch, without building', () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-cache-'));
    const msDir = fakeMediasoup('9.9.9');
    const cachedDir = path.join(cache, `mediasoup-worker-9.9.9-${process.platform}-${process.arch}`);
    fs.mkdirSync(cachedDir);
    fs.writeFileSync(path.join(cachedDir, 'mediasoup-worker'), '#!/bin/sh\necho fake\n', { mode: 0o755 });
    const res = run(msDir, { ROOMGATE_CACHE_DIR: cache });
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/cached worker found/);
    const installed = path.join(msDir, 'worker', 'out', 'Release', 'mediasoup-worker');
    expect(fs.readFileSync(installed, 'utf8')).toContain('echo fake');
    expect(fs.statSync(installed).mode & 0o111).not.toBe(0);
  });

  it('refuses to build a release without worker sources, saying so', () => {
    const res = run(fakeMediasoup('9.9.8'), { ROOMGATE_CACHE_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-cache-')) });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/has no Makefile: this mediasoup release does not ship its worker sources/);
  });

  it('honours MEDIASOUP_WORKER_BIN and checks it is executable', () => {
    const ok = run(fakeMediasoup('9.9.7'), { MEDIASOUP_WORKER_BIN: '/bin/true' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/using MEDIASOUP_WORKER_BIN=\/bin\/true/);
    const bad = run(fakeMediasoup('9.9.7'), { MEDIASOUP_WORKER_BIN: '/nonexistent/worker' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/is not an executable file/);
  });
});
