// Phase 3 of startGateway: the services between the media layer and the edges: metrics, webhooks,
// the egress queue and launcher, the rooms, agent dispatch and the ingress sessions.
import { agentJoinTokens, AgentDispatcher } from '../agents/server/AgentDispatcher.ts';
import { TokenVerifier } from '../auth/tokens.ts';
import type { Config } from '../config.ts';
import { autoEgress } from '../egress/autoEgress.ts';
import { EgressService } from '../egress/EgressService.ts';
import { EgressQueue } from '../egress/EgressQueue.ts';
import { EgressStore } from '../egress/EgressStore.ts';
import { jobDataKey } from '../egress/jobSecrets.ts';
import { IngressSessions } from '../ingress/IngressSessions.ts';
import { moduleLogger } from '../logger.ts';
import { createMetrics, type Metrics } from '../metrics.ts';
import { iceServersFor } from '../signaling/iceServers.ts';
import { roomgateRelayCodec } from '../signaling/relayCodec.ts';
import type { IceServer } from '../sfu/ParticipantTypes.ts';
import { RoomManager } from '../sfu/RoomManager.ts';
import { IngressStore } from '../store/IngressStore.ts';
import { RoomStore } from '../store/RoomStore.ts';
import { SipStore } from '../store/SipStore.ts';
import { bridgeRoomWebhooks } from '../webhooks/roomWebhooks.ts';
import { WebhookNotifier } from '../webhooks/WebhookNotifier.ts';
import { startCluster, type GatewayCluster } from './cluster.ts';
import type { GatewayMedia } from './media.ts';
import type { GatewaySettings } from './settings.ts';
import type { Shutdown } from './shutdown.ts';
import type { GatewayState } from './state.ts';

export interface GatewayServices {
  metrics: Metrics;
  webhooks: WebhookNotifier;
  egressQueue: EgressQueue;
  egressStore: EgressStore;
  /** Every egress start and change (Twirp and auto egress). */
  egress: EgressService;
  rooms: RoomManager;
  agents: AgentDispatcher;
  verifier: TokenVerifier;
  ingress: IngressStore;
  ingressSessions: IngressSessions;
  /** SIP trunks and dispatch rules (livekit.SIP). */
  sip: SipStore;
  iceServers: (identity: string) => IceServer[];
  /** Present when cluster.enabled: RoomService and signaling routed to each room's node. */
  cluster?: GatewayCluster;
}

export async function startServices(
  config: Config,
  settings: GatewaySettings,
  state: GatewayState,
  { pool }: GatewayMedia,
  /** Open signaling connections, for the gauge: the edges start after this phase. */
  connections: () => number,
  shutdown: Shutdown,
): Promise<GatewayServices> {
  const { redis, redisUrl } = state;
  const iceServers = (identity: string): IceServer[] => iceServersFor(settings.iceConfig, identity);
  const metrics = createMetrics({
    activeRooms: () => rooms.activeRooms,
    participants: () => rooms.participantCount,
    connections,
  });
  const webhooks = new WebhookNotifier({ urls: config.webhook.urls, ...settings.webhookKey, log: moduleLogger('webhooks'), metrics });
  shutdown.at('webhooks', () => webhooks.close());

  // Egress: the API queues jobs; workers (separate processes) pull media through the taps. The
  // rooms start auto egress (CreateRoom `egress`) through the same launcher as StartEgress.
  const egressQueue = new EgressQueue(redisUrl, jobDataKey(config.egress.worker_secret));
  shutdown.at('egress queue', () => egressQueue.close());
  const egressStore = new EgressStore(redis);
  const egress = new EgressService({ store: egressStore, queue: egressQueue, webhooks, log: moduleLogger('egress') });

  const rooms = new RoomManager({
    store: new RoomStore(redis),
    pool,
    node: config.node_id,
    defaults: {
      emptyTimeout: config.room.empty_timeout,
      departureTimeout: config.room.departure_timeout,
      maxParticipants: config.room.max_participants,
    },
    transport: { ...settings.listen, iceServers },
    codec: roomgateRelayCodec,
    autoEgress: autoEgress({ launcher: egress, s3: config.egress.s3 }),
    log: moduleLogger('rooms'),
  });
  // Rooms close before the sockets do, so participants are told SERVER_SHUTDOWN.
  shutdown.at('rooms', () => rooms.close());
  bridgeRoomWebhooks(rooms, webhooks);
  await rooms.restore();

  const agents = new AgentDispatcher({
    rooms,
    webhooks,
    log: moduleLogger('agents'),
    offerTimeoutMs: settings.agentOfferTimeoutMs,
    mintJoinToken: agentJoinTokens(settings.serviceKey.apiKey, settings.serviceKey.apiSecret),
  });
  shutdown.at('agents', () => agents.close());
  rooms.on('roomstarted', (room) => agents.roomStarted(room));
  rooms.on('roomfinished', (room) => agents.roomFinished(room));
  rooms.on('participantleft', (room, p) => agents.participantLeft(room.name, p.identity, p.sid));

  const verifier = new TokenVerifier(config.keys);

  const ingress = new IngressStore(redis);
  await ingress.load();
  const ingressSessions = new IngressSessions({ store: ingress, rooms, webhooks, log: moduleLogger('ingress') });
  await ingressSessions.resetStale();
  // The edges end the sessions with their publishers ('publishers'); this catches a start that
  // failed before the edges were up, and waits for the state writes.
  shutdown.at('ingress state', async () => {
    ingressSessions.close();
    await ingressSessions.flush();
  });

  const sip = new SipStore(redis);
  await sip.load();

  const cluster = config.cluster.enabled ? await startCluster(config, settings, state, rooms, pool, webhooks, ingress, shutdown) : undefined;

  return { metrics, webhooks, egressQueue, egressStore, egress, rooms, agents, verifier, ingress, ingressSessions, sip, iceServers, ...(cluster ? { cluster } : {}) };
}
