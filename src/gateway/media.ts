// Phase 2 of startGateway: the mediasoup workers every room, WHEP viewer and tap runs on.
import type { Config } from '../config.ts';
import { moduleLogger } from '../logger.ts';
import { WorkerPool } from '../sfu/WorkerPool.ts';
import type { Shutdown } from './shutdown.ts';

export interface GatewayMedia {
  pool: WorkerPool;
}

export async function startMedia(config: Config, shutdown: Shutdown): Promise<GatewayMedia> {
  const pool = await WorkerPool.create({
    count: config.rtc.workers,
    rtcMinPort: config.rtc.min_port,
    rtcMaxPort: config.rtc.max_port,
    consumersPerWorker: config.rtc.consumers_per_worker,
    log: moduleLogger('workers'),
  });
  shutdown.at('media workers', () => pool.close());
  return { pool };
}
