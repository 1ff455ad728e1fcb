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
  const stop = (signal: NodeJS.Signals) => {
    if (++signals > 1) process.exit(130);
    rootLogger().info({ signal }, 'egress worker stopping');
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`roomgate egress worker: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`roomgate egress worker: failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
