// Egress worker entry point (`npm run worker`): a BullMQ consumer of the egress queue. Run any
// number, on any host that reaches Redis and the gateway's API and receives UDP from the gateway.
// Same configuration as the gateway (ROOMGATE_* env vars, optional YAML via ROOMGATE_CONFIG).
import { ConfigError, loadConfig } from '../src/config.ts';
import { startEgressWorker } from '../src/egress/worker/startWorker.ts';
import { configureLogger, rootLogger } from '../src/logger.ts';

async function main(): Promise<void> {
  const config = loadConfig();
  configureLogger(config.log_level);
  const worker = await startEgressWorker(config);
  let signals = 0;
  const stop = (why: string) => {
    if (++signals > 1) process.exit(130);
    rootLogger().info({ why }, 'egress worker stopping: draining running egresses');
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A child of `npm start` has an IPC channel to the gateway: it closes when the gateway dies,
  // however it died, and a worker without its gateway must not go on taking jobs.
  if (process.channel) {
    process.channel.unref();
    process.once('disconnect', () => stop('gateway process gone'));
  }
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`roomgate egress worker: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`roomgate egress worker: failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
