// Deadlines for tests on a loaded machine. A test waits for an observable event and fails only when
// it has not happened by a deadline; on a busy 2-core box media runs slower than real time, so every
// deadline is multiplied by one factor: TEST_TIME_SCALE when set (e.g. 3 on CI next to other jobs),
// else the 1-minute load average per core at start (at least 1, at most 4). The factor only
// lengthens how long a failing test waits; a passing one returns as soon as its event happens.
import os from 'node:os';

function factor(): number {
  const set = Number(process.env.TEST_TIME_SCALE);
  if (Number.isFinite(set) && set > 0) return set;
  const perCore = os.loadavg()[0]! / Math.max(1, os.cpus().length);
  return Math.min(4, Math.max(1, Math.round(perCore * 10) / 10));
}

export const TIME_SCALE = factor();

/** `ms` stretched by the machine's load factor. */
export const scaled = (ms: number): number => Math.round(ms * TIME_SCALE);
