// Prometheus metrics (prom-client), one registry per gateway so tests can run several in a process.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly twirpRequests: Counter<'service' | 'method' | 'code'>;
  readonly twirpDuration: Histogram<'service' | 'method'>;
  readonly webhookDeliveries: Counter<'event' | 'result'>;
  readonly rooms: Gauge;
  readonly participants: Gauge;
  readonly connections: Gauge;
}

export interface MetricSources {
  activeRooms: () => number;
  participants?: () => number;
  connections?: () => number;
}

export function createMetrics(opts: MetricSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'roomgate_' });
  return {
    registry,
    twirpRequests: new Counter({
      name: 'roomgate_twirp_requests_total',
      help: 'Twirp API calls by service, method and result code',
      labelNames: ['service', 'method', 'code'] as const,
      registers: [registry],
    }),
    twirpDuration: new Histogram({
      name: 'roomgate_twirp_request_duration_seconds',
      help: 'Twirp API call latency',
      labelNames: ['service', 'method'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    webhookDeliveries: new Counter({
      name: 'roomgate_webhook_deliveries_total',
      help: 'Webhook POSTs by event and result (delivered, retried, dropped; overflow: dropped unsent from a full queue)',
      labelNames: ['event', 'result'] as const,
      registers: [registry],
    }),
    rooms: new Gauge({
      name: 'roomgate_rooms',
      help: 'Rooms hosted by this node',
      registers: [registry],
      collect() {
        this.set(opts.activeRooms());
      },
    }),
    participants: new Gauge({
      name: 'roomgate_participants',
      help: 'Participants in the rooms of this node (hidden ones included)',
      registers: [registry],
      collect() {
        this.set(opts.participants?.() ?? 0);
      },
    }),
    connections: new Gauge({
      name: 'roomgate_signaling_connections',
      help: 'Open participant WebSockets',
      registers: [registry],
      collect() {
        this.set(opts.connections?.() ?? 0);
      },
    }),
  };
}
