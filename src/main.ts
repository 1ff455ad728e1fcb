// Start-up and shutdown of one gateway, nothing else. The CLI (src/cli.ts) calls startGateway;
// tests call it too, several per process, each with its own ports, Redis and data dir. The phases
// (src/gateway/) start in order: state (Redis), media (mediasoup workers), services (rooms, agents,
// ingress, egress queue, webhooks) and edges (every protocol endpoint and the HTTP server); each
// registers what it started with the one staged shutdown (src/gateway/shutdown.ts).
import type { AgentDispatcher } from './agents/server/AgentDispatcher.ts';
import { DEV_API_KEY, DEV_API_SECRET, type Config } from './config.ts';
import { startEdges, type GatewayEdges } from './gateway/edges.ts';
import { startMedia } from './gateway/media.ts';
import { startServices } from './gateway/services.ts';
import { gatewaySettings } from './gateway/settings.ts';
import { Shutdown } from './gateway/shutdown.ts';
import { openState } from './gateway/state.ts';
import { configureLogger, moduleLogger, rootLogger } from './logger.ts';
import type { RoomManager } from './sfu/RoomManager.ts';
import { redactUrl } from './store/redis.ts';

export interface Gateway {
  readonly config: Config;
  /** http://host:port of the API. */
  readonly url: string;
  readonly port: number;
  readonly redisUrl: string;
  readonly rooms: RoomManager;
  /** Agent workers, dispatches and jobs. */
  readonly agents: AgentDispatcher;
  /** The RTMP listener's port (0 when RTMP is off). */
  readonly rtmpPort: number;
  /** The SIP listener's UDP port (0 when SIP is off). */
  readonly sipPort: number;
  /** PIDs of the mediasoup-worker processes (metrics, benchmarks). */
  readonly mediaWorkerPids: number[];
  /** PID of the supervised egress worker child (0 when egress.worker is off or between restarts). */
  readonly egressWorkerPid: number;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Replace the root logger (default: configured from config.log_level to stdout). */
  configureLogging?: boolean;
}

const DEV_KEY_WARNING = (() => {
  const lines = [
    `roomgate is running with the built-in DEVELOPMENT API key '${DEV_API_KEY}' / '${DEV_API_SECRET}'.`,
    'Anyone who can reach the API port can mint tokens; it only listens on loopback.',
    'Set ROOMGATE_API_KEY and ROOMGATE_API_SECRET (or keys: in a config file) for real use.',
  ];
  const width = Math.max(...lines.map((l) => l.length)) + 4;
  const bar = '*'.repeat(width + 2);
  return [bar, ...lines.map((l) => `*  ${l.padEnd(width - 2)}*`), bar].join('\n');
})();

export async function startGateway(config: Config, opts: StartOptions = {}): Promise<Gateway> {
  if (opts.configureLogging !== false) configureLogger(config.log_level);
  const log = moduleLogger('gateway', { node: config.node_id });
  if (config.dev_keys) {
    log.warn({ apiKey: DEV_API_KEY }, 'using the built-in development API key; do not expose this gateway');
    if (config.log_level !== 'silent') process.stderr.write(`${DEV_KEY_WARNING}\n`);
  }

  // Each phase registers what it started, so a failure half-way leaves nothing running behind.
  const shutdown = new Shutdown(log);
  try {
    const settings = gatewaySettings(config);
    const state = await openState(config, log, shutdown);
    const media = await startMedia(config, shutdown);
    let edges: GatewayEdges | undefined; // started below; the connections gauge reads it when scraped
    const services = await startServices(config, settings, state, media, () => edges?.connections() ?? 0, shutdown);
    edges = await startEdges(config, settings, state, media, services, log, shutdown);
    log.info(
      { url: edges.url, redis: redactUrl(state.redisUrl), workers: config.rtc.workers, webhooks: config.webhook.urls.length },
      'roomgate listening',
    );

    const { pool } = media;
    const started = edges;
    let closing: Promise<void> | undefined;
    return {
      config,
      url: started.url,
      port: started.port,
      redisUrl: state.redisUrl,
      rooms: services.rooms,
      agents: services.agents,
      rtmpPort: started.rtmpPort,
      sipPort: started.sipPort,
      get mediaWorkerPids() {
        return pool.workerPids;
      },
      get egressWorkerPid() {
        return started.egressWorkerPid;
      },
      close() {
        closing ??= (async () => {
          log.info('shutting down');
          await shutdown.run();
          log.info('stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await shutdown.run();
    throw err;
  }
}

export { rootLogger };
