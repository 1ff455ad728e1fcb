#!/usr/bin/env node
// Installs a working mediasoup-worker binary for the mediasoup package in node_modules.
//
// Why this exists: mediasoup's own postinstall (disabled through "allowScripts" in package.json)
// builds the worker in place and, for 3.8.4, fails with Python >= 3.10 and glibc >= 2.34. This
// script applies the two source fixes to a private copy of the worker sources, builds once, and
// caches the binary outside the repository keyed by mediasoup version, platform and arch, so a
// second `npm ci` takes seconds. The binary is then copied to the path mediasoup 3.x resolves by
// default (worker/out/Release/mediasoup-worker), so `import 'mediasoup'` works with no env var.
//
// MEDIASOUP_WORKER_BIN, when set, wins: nothing is built and mediasoup uses that binary itself.
// ROOMGATE_CACHE_DIR overrides the cache location (default $XDG_CACHE_HOME or ~/.cache, /roomgate).
//
// Usage: node scripts/build-mediasoup-worker.mjs [path/to/mediasoup/package]
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const log = (msg) => console.log(`[mediasoup-worker] ${msg}`);

function fail(msg) {
  console.error(`[mediasoup-worker] ERROR: ${msg}`);
  process.exit(1);
}

function findMediasoupDir() {
  if (process.argv[2]) return path.resolve(process.argv[2]);
  const require = createRequire(import.meta.url);
  return path.dirname(require.resolve('mediasoup/package.json'));
}

function isExecutableFile(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Source fixes for mediasoup 3.8.x on current toolchains; each must match or the build is stale. */
const PATCHES = [
  {
    file: 'deps/gyp/pylib/gyp/common.py',
    from: /collections\.MutableSet/g,
    to: 'collections.abc.MutableSet',
    why: 'Python 3.10 moved MutableSet to collections.abc',
  },
  {
    file: 'deps/gyp/pylib/gyp/msvs_emulation.py',
    from: /collections\.Iterable/g,
    to: 'collections.abc.Iterable',
    why: 'Python 3.10 moved Iterable to collections.abc',
  },
  {
    file: 'deps/libwebrtc/deps/abseil-cpp/abseil-cpp/absl/debugging/failure_signal_handler.cc',
    from: /std::max\(SIGSTKSZ, 65536\)/g,
    to: 'std::max<size_t>(SIGSTKSZ, 65536)',
    why: 'glibc 2.34 made SIGSTKSZ a long',
  },
];

function applyPatches(workerDir) {
  for (const p of PATCHES) {
    const file = path.join(workerDir, p.file);
    if (!fs.existsSync(file)) {
      log(`patch target missing (${p.file}); assuming this mediasoup version does not need it`);
      continue;
    }
    const src = fs.readFileSync(file, 'utf8');
    const out = src.replace(p.from, p.to);
    if (out !== src) {
      fs.writeFileSync(file, out);
      log(`patched ${p.file}: ${p.why}`);
    }
  }
}

function findPython() {
  for (const candidate of [process.env.PYTHON, 'python3', 'python']) {
    if (!candidate) continue;
    try {
      execFileSync(candidate, ['--version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next one
    }
  }
  return fail('python3 is required to build the mediasoup worker (apt-get install -y python3)');
}

function build(msDir, cachedBin) {
  const srcWorker = path.join(msDir, 'worker');
  if (!fs.existsSync(path.join(srcWorker, 'Makefile'))) {
    fail(`${srcWorker} has no Makefile: this mediasoup release does not ship its worker sources`);
  }
  for (const tool of ['make', 'g++']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      fail(`'${tool}' is required to build the mediasoup worker (apt-get install -y build-essential)`);
    }
  }
  const python = findPython();
  const buildRoot = fs.mkdtempSync(path.join(path.dirname(cachedBin), 'build-'));
  const workerDir = path.join(buildRoot, 'worker');
  try {
    log(`copying worker sources to ${workerDir}`);
    fs.cpSync(srcWorker, workerDir, { recursive: true });
    applyPatches(workerDir);
    const cores = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
    log(`building with ${cores} jobs (takes about 9 minutes on 2 cores)...`);
    const started = Date.now();
    const env = { ...process.env, PYTHON: python, CORES: cores };
    delete env.MEDIASOUP_WORKER_BIN; // the Makefile skips the build when it is set
    // Build output is long; keep the log beside the cache for post-mortems, print it on failure.
    const logFile = path.join(path.dirname(cachedBin), 'build.log');
    const fd = fs.openSync(logFile, 'w');
    try {
      execFileSync('make', ['-C', workerDir], { env, stdio: ['ignore', fd, fd] });
    } catch {
      fs.closeSync(fd);
      const tail = fs.readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n');
      fail(`worker build failed; last lines of ${logFile}:\n${tail}`);
    }
    fs.closeSync(fd);
    const built = path.join(workerDir, 'out', 'Release', 'mediasoup-worker');
    if (!isExecutableFile(built)) fail(`build finished but ${built} is missing`);
    // Copy then rename, so a concurrent or interrupted install never sees a partial binary.
    const tmp = `${cachedBin}.tmp-${process.pid}`;
    fs.copyFileSync(built, tmp);
    fs.chmodSync(tmp, 0o755);
    fs.renameSync(tmp, cachedBin);
    log(`built in ${Math.round((Date.now() - started) / 1000)} s, cached at ${cachedBin}`);
  } finally {
    fs.rmSync(buildRoot, { recursive: true, force: true });
  }
}

function main() {
  if (process.env.MEDIASOUP_WORKER_BIN) {
    const bin = process.env.MEDIASOUP_WORKER_BIN;
    if (!isExecutableFile(bin)) fail(`MEDIASOUP_WORKER_BIN=${bin} is not an executable file`);
    log(`using MEDIASOUP_WORKER_BIN=${bin}; nothing to build`);
    return;
  }
  const msDir = findMediasoupDir();
  const version = JSON.parse(fs.readFileSync(path.join(msDir, 'package.json'), 'utf8')).version;
  const cacheRoot =
    process.env.ROOMGATE_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'roomgate');
  const cacheDir = path.join(cacheRoot, `mediasoup-worker-${version}-${process.platform}-${process.arch}`);
  const cachedBin = path.join(cacheDir, 'mediasoup-worker');
  fs.mkdirSync(cacheDir, { recursive: true });

  if (isExecutableFile(cachedBin)) log(`cached worker found at ${cachedBin}`);
  else build(msDir, cachedBin);

  const target = path.join(msDir, 'worker', 'out', 'Release', 'mediasoup-worker');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.rmSync(target, { force: true });
  fs.copyFileSync(cachedBin, target);
  fs.chmodSync(target, 0o755);
  log(`installed ${target}`);
}

main();
