// Part of startGateway's services phase when cluster.enabled: this node's entry in the node
// registry (heartbeat and load), its request channel, the RoomService router that forwards to the
// room's node, the signaling proxy for the edges, and the finishing of dead nodes' rooms.
import { ClusterRooms } from '../cluster/ClusterRooms.ts';
import { NodeRegistry } from '../cluster/NodeRegistry.ts';
import { NodeRpc } from '../cluster/NodeRpc.ts';
import { proxySignaling, type UpgradeHandler } from '../cluster/signalProxy.ts';
import type { Config } from '../config.ts';
import { moduleLogger } from '../logger.ts';
import type { RoomManager } from '../sfu/RoomManager.ts';
import type { WorkerPool } from '../sfu/WorkerPool.ts';
import type { IngressStore } from '../store/IngressStore.ts';
import { RoomStore } from '../store/RoomStore.ts';
import type { WebhookNotifier } from '../webhooks/WebhookNotifier.ts';
import type { GatewaySettings } from './settings.ts';
import type { Shutdown } from './shutdown.ts';
import type { GatewayState } from './state.ts';

export interface GatewayCluster {
  /** Started by the edges once the HTTP server listens: no node is sent a room or a socket before it can take them. */
  registry: NodeRegistry;
  /** RoomService's backend: forwards to the room's node. */
  rooms: ClusterRooms;
  /** Wraps the edges' upgrade routing: a signaling socket for a room elsewhere is piped there. */
  upgrade(local: UpgradeHandler, paths: string[]): UpgradeHandler;
}

export async function startCluster(
  config: Config,
  settings: GatewaySettings,
  { redis }: GatewayState,
  rooms: RoomManager,
  pool: WorkerPool,
  webhooks: Pick<WebhookNotifier, 'notify'>,
  ingress: IngressStore,
  shutdown: Shutdown,
): Promise<GatewayCluster> {
  const log = moduleLogger('cluster', { node: config.node_id });
  const store = new RoomStore(redis);
  // Bound to all interfaces, the bind address says nothing to other machines: the announced IP does.
  const allInterfaces = config.bind === '0.0.0.0' || config.bind === '::';
  const host = allInterfaces && config.rtc.announced_ip ? config.rtc.announced_ip : settings.urlHost;
  const url = config.cluster.advertise_url ?? `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${config.port}`;
  const registry = new NodeRegistry({
    redis,
    self: {
      id: config.node_id,
      url,
      mediaIp: settings.listen.announcedIp ?? settings.listenIp,
    },
    load: () => ({
      rooms: rooms.activeRooms,
      participants: rooms.participantCount,
      workers: pool.workerPids.length,
      consumers: pool.load.reduce((n, w) => n + w.consumers, 0),
    }),
    heartbeatMs: config.cluster.heartbeat_ms,
    ttlMs: config.cluster.node_ttl_ms,
    onDead: async (nodeId) => {
      // HDEL answers 1 to one caller only, so each room's room_finished is sent once even if two
      // survivors reap at once (the lock makes that rare).
      for (const { room, node } of await store.list()) {
        if (node !== nodeId || !(await store.delete(room.name))) continue;
        log.warn({ room: room.name, deadNode: nodeId }, 'room finished: its node is gone');
        webhooks.notify('room_finished', { room });
      }
    },
    log,
  });
  const rpc = new NodeRpc({ redis, selfId: config.node_id, timeoutMs: config.cluster.rpc_timeout_ms, log });
  const clusterRooms = new ClusterRooms({ local: rooms, store, registry, rpc, log });
  await rpc.start((method, args) => clusterRooms.serve(method, args));
  // Each node indexes ingress definitions in memory (stream key lookups at RTMP/WHIP handshakes):
  // a write on one node makes the others re-read that ingress.
  ingress.onWrite((id) => rpc.broadcast('ingress', id));
  rpc.onBroadcast('ingress', (id) => {
    ingress.refresh(id).catch((err: unknown) => log.warn({ ingress: id, err: (err as Error).message }, 'could not re-read an ingress another node wrote'));
  });
  // After the rooms closed: the survivors then finish them at their next beat.
  shutdown.at('sockets', async () => {
    await registry.close();
    await rpc.close();
  });
  log.info({ url, heartbeatMs: config.cluster.heartbeat_ms, ttlMs: config.cluster.node_ttl_ms }, 'cluster channel open; the node registers once it listens');
  return {
    registry,
    rooms: clusterRooms,
    upgrade: (local, paths) =>
      proxySignaling({ selfId: config.node_id, paths, locate: (room) => clusterRooms.locate(room), local, log: moduleLogger('cluster-proxy') }),
  };
}
