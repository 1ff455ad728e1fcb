// Runs before every test file. Quiet logs in tests unless TEST_LOG_LEVEL asks for them (gateways
// started by tests set their own).
import fs from 'node:fs';
import { afterAll } from 'vitest';
import { configureLogger } from '../src/logger.ts';
import { runningFfmpegPids } from '../src/media/ffmpeg.ts';
import { scaled } from './helpers/deadline.ts';
import { waitFor } from './helpers/net.ts';

configureLogger((process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent');

// Every file leaves no FFmpeg behind: this hook is registered before the file's own, and vitest runs
// afterAll hooks as a stack (sequence.hooks 'stack'), so it runs last, once the file has closed its
// gateways, workers, participants and sinks. Whatever is still running is killed so it cannot
// disturb the next file, and the file fails with the command lines.
afterAll(async () => {
  try {
    await waitFor(() => (runningFfmpegPids().length === 0 ? true : undefined), 15_000, 'every FFmpeg this file started to exit');
  } catch (err) {
    const left = runningFfmpegPids();
    const commands = left.map((pid) => {
      try {
        return `${pid}: ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 200)}`;
      } catch {
        return String(pid);
      }
    });
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    throw new Error(`${String(err)}; left running:\n${commands.join('\n')}`);
  }
}, scaled(30_000));
