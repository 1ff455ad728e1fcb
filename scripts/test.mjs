// `npm test`: the typecheck and the lint run beside the test suite rather than before it. The suite
// spends most of its time waiting on real-time media (recordings, keyframe intervals), so on a
// 2-core machine the checks' ~35 s of CPU fit into its waits instead of adding to its wall time.
// Fails when any of the three fails; arguments go to vitest (`npm test -- test/unit`).
import { spawn } from 'node:child_process';

/** Runs a command of node_modules/.bin (npm puts it on PATH) and resolves with its exit status. */
function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: 'inherit' });
    child.on('error', (err) => {
      console.error(`${cmd}: ${err.message}`);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const checks = (async () => {
  const tsc = await run('tsc', ['--noEmit']);
  const lint = await run('npm', ['run', '--silent', 'lint']);
  return tsc || lint;
})();
const suite = run('vitest', ['run', ...process.argv.slice(2)]);
const [checked, tested] = await Promise.all([checks, suite]);
if (checked !== 0) console.error('npm test: the typecheck or the lint failed (see above)');
process.exit(checked || tested);
