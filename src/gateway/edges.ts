// Phase 4 of startGateway: the edges. Signaling (/rtc for roomgate and stock LiveKit clients),
// /agent, RTMP, WHIP, WHEP, Twirp, URL ingress, the console, the egress taps, the HTTP server
// that routes to them, and the egress worker child that records through the taps.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { AGENT_PATH } from '../agents/protocol.ts';
import { AgentServer } from '../agents/server/AgentServer.ts';
import { isLiveKitWorkerUpgrade, LiveKitWorkers } from '../agents/server/LiveKitWorkers.ts';
import { createHttpServer } from '../api/http.ts';
import { agentDispatchService } from '../api/twirp/agentDispatch.ts';
import { egressService } from '../api/twirp/egress.ts';
import { ingressService } from '../api/twirp/ingress.ts';
import { roomService } from '../api/twirp/room.ts';
import { sipService } from '../api/twirp/sip.ts';
import { TwirpRouter } from '../api/twirp/router.ts';
import { claimsJoiner } from '../auth/join.ts';
import { mintToken, type MintOptions } from '../auth/tokens.ts';
import { browserSdk } from '../client/bundle.ts';
import { DEV_API_KEY, DEV_API_SECRET, type Config } from '../config.ts';
import { CONSOLE_PATH, ConsoleServer } from '../console/ConsoleServer.ts';
import { EGRESS_INTERNAL_PATH, EgressTaps, egressRoomLookup, liveEgressJobs } from '../egress/EgressTaps.ts';
import { superviseEgressWorker, type SupervisedWorker } from '../egress/workerChild.ts';
import { newSecret } from '../ids.ts';
import { RtmpIngestServer } from '../ingress/rtmp/RtmpServer.ts';
import { UrlIngest } from '../ingress/UrlIngest.ts';
import { UrlPolicy } from '../ingress/urlPolicy.ts';
import { UrlIngressProxy } from '../ingress/urlProxy.ts';
import { WHIP_PATH, WhipServer } from '../ingress/whip/WhipServer.ts';
import { LIVEKIT_DEMO_PATH, LIVEKIT_SDK_PATH, serveLiveKitDemo } from '../livekit/demo.ts';
import { LIVEKIT_RTC_PATH, LiveKitSignaling } from '../livekit/LiveKitSignaling.ts';
import { isLiveKitUpgrade } from '../livekit/signal.ts';
import { moduleLogger, type Logger } from '../logger.ts';
import { SIGNALING_PATH, SignalingServer } from '../signaling/server.ts';
import { SipServer } from '../sip/SipServer.ts';
import type { SignalSink } from '../sfu/ParticipantTypes.ts';
import { PLAY_PATH, WHEP_PATH, WhepServer, servePlayPage } from '../whep/WhepServer.ts';
import type { GatewayMedia } from './media.ts';
import type { GatewayServices } from './services.ts';
import type { GatewaySettings } from './settings.ts';
import type { Shutdown } from './shutdown.ts';
import type { GatewayState } from './state.ts';

export interface GatewayEdges {
  url: string;
  port: number;
  /** The RTMP listener's port (0 when RTMP is off). */
  rtmpPort: number;
  /** The SIP listener's UDP port (0 when SIP is off). */
  sipPort: number;
  /** PID of the supervised egress worker child (0 when egress.worker is off or between restarts). */
  readonly egressWorkerPid: number;
  /** Open signaling connections (both protocols). */
  connections(): number;
}

export async function startEdges(
  config: Config,
  settings: GatewaySettings,
  { redis, redisUrl }: GatewayState,
  { pool }: GatewayMedia,
  services: GatewayServices,
  log: Logger,
  shutdown: Shutdown,
): Promise<GatewayEdges> {
  const { metrics, webhooks, egressQueue, egressStore, egress, rooms, agents, verifier, ingress, ingressSessions, sip, iceServers } = services;
  const { listenIp } = settings;

  // Publishers go first, so ingresses end INACTIVE with their FFmpeg gone; registered before they
  // start so that a start failing half-way stops the ones already up.
  let rtmp: RtmpIngestServer | undefined;
  let whip: WhipServer | undefined;
  let whep: WhepServer | undefined;
  let urlIngest: UrlIngest | undefined;
  let sipServer: SipServer | undefined;
  shutdown.at('publishers', async () => {
    await Promise.all([whip?.close(), whep?.close(), rtmp?.close(), urlIngest?.close(), sipServer?.close()]);
    ingressSessions.close();
  });

  const joiner = agents.gateJoins(claimsJoiner(rooms, moduleLogger('rooms')));
  const signaling = new SignalingServer({ verifier, rooms: joiner, iceServers, log: moduleLogger('signaling') });
  // Stock LiveKit clients on the same path, told apart at the upgrade.
  const mint = (opts: MintOptions) => mintToken(settings.serviceKey.apiKey, settings.serviceKey.apiSecret, opts);
  const livekit = new LiveKitSignaling({ verifier, rooms: joiner, iceServers, mint, nodeId: config.node_id, log: moduleLogger('livekit') });
  let agentServer: AgentServer | undefined;
  // Stock LiveKit agent workers (@livekit/agents) on /agent beside roomgate's own, told apart at the upgrade.
  const lkWorkers = new LiveKitWorkers({
    verifier,
    dispatcher: agents,
    mint,
    nodeId: config.node_id,
    log: moduleLogger('agents'),
  });
  shutdown.at('sockets', async () => {
    await Promise.all([signaling.close(), livekit.close(), agentServer?.close(), lkWorkers.close()]);
  });

  if (config.rtmp.enabled) {
    rtmp = new RtmpIngestServer({
      port: config.rtmp.port,
      bind: settings.rtmpBind,
      store: ingress,
      sessions: ingressSessions,
      maxPublishers: config.rtmp.max_publishers,
      admission: settings.rtmpAdmission,
      log: moduleLogger('rtmp'),
    });
    await rtmp.start();
  }
  if (config.sip.enabled) {
    // Calls are server-driven participants: nothing is sent to them over signaling.
    const sink: SignalSink = { send: () => undefined, close: () => undefined, superseded: () => undefined };
    const sipBind = config.sip.bind ?? (listenIp === '0.0.0.0' ? '0.0.0.0' : listenIp);
    sipServer = new SipServer({
      port: config.sip.port,
      bind: sipBind,
      announcedIp: config.sip.announced_ip ?? (sipBind === '0.0.0.0' ? (settings.listen.announcedIp ?? '127.0.0.1') : sipBind),
      maxCalls: config.sip.max_calls,
      routing: { inboundTrunks: () => sip.inbound.list(), rules: () => sip.rules.list() },
      join: (req) => rooms.join(req, sink),
      log: moduleLogger('sip'),
    });
    await sipServer.start();
  }
  whip = new WhipServer({
    streamKeys: ingress,
    sessions: ingressSessions,
    rooms,
    iceServers,
    maxSessions: config.whip.max_sessions,
    log: moduleLogger('whip'),
  });
  whep = new WhepServer({
    verify: (token) => verifier.verify(token),
    rooms,
    iceServers,
    maxSessions: config.whep.max_sessions,
    log: moduleLogger('whep'),
  });
  agentServer = new AgentServer({ verifier, dispatcher: agents, log: moduleLogger('agents') });
  const twirp = new TwirpRouter({ verifier, metrics, log: moduleLogger('twirp') });
  // With a cluster, RoomService answers for every node's rooms (src/cluster/ClusterRooms.ts).
  twirp.register(roomService(services.cluster?.rooms ?? rooms));
  twirp.register(agentDispatchService(agents));
  twirp.register(sipService(sip, sipServer));
  const urlPolicy = new UrlPolicy(config.ingress.url_allow);
  const urlProxy = await UrlIngressProxy.start(urlPolicy, moduleLogger('ingress-proxy'));
  shutdown.at('url proxy', () => urlProxy.close());
  const urlRuns = new UrlIngest(ingressSessions, moduleLogger('ingress'), {
    policy: urlPolicy,
    proxy: urlProxy,
    maxSessions: config.ingress.url_max_sessions,
  });
  urlIngest = urlRuns;
  twirp.register(
    ingressService(ingress, settings.publicIngestUrls, {
      stop: (id) => ingressSessions.stop(id),
      // The run reports its failures in the ingress state; anything else is logged here.
      startUrl: (info) => {
        urlRuns.start(info).catch((err: unknown) => log.error({ err, ingress: info.ingressId }, 'URL ingress run failed'));
      },
      urlFull: () => urlRuns.full,
    }),
  );
  twirp.register(
    egressService({
      service: egress,
      rooms: egressRoomLookup(rooms),
      s3: config.egress.s3,
    }),
  );

  const consoleServer = config.console.enabled
    ? new ConsoleServer({
        keys: config.keys,
        sessionTtl: config.console.session_ttl,
        twirp,
        live: {
          activeSpeakers: (room) => rooms.liveRoom(room)?.activeSpeakers.map((s) => ({ identity: s.identity, level: s.level })) ?? [],
          ingressHealth: (id) => {
            const live = ingressSessions.live(id);
            return live ? { videoHandling: live.videoHandling, keyframeIntervalMs: live.keyframeIntervalMs } : undefined;
          },
          queue: async () => {
            const o = await egressQueue.overview();
            // Load as the workers count it: each running job reserves its kind's cost (this gateway's settings).
            const workers = o.workers.map((w) => {
              const jobs = o.activeJobs.filter((j) => j.worker === w.name);
              return { ...w, jobs: jobs.map((j) => j.egressId), reservedCpu: jobs.reduce((n, j) => n + settings.egressCosts[j.kind], 0) };
            });
            return { ...o, workers, maxCpu: config.egress.max_cpu };
          },
        },
        previewToken: (room) =>
          mintToken(settings.serviceKey.apiKey, settings.serviceKey.apiSecret, {
            identity: `console-preview-${newSecret(48)}`,
            video: { roomJoin: true, room, canSubscribe: true, canPublish: false, canPublishData: false, hidden: true },
            ttl: 60,
          }),
        log: moduleLogger('console'),
      })
    : undefined;
  if (consoleServer) shutdown.at('console', () => consoleServer.close());
  const egressTaps = new EgressTaps({
    rooms,
    jobs: liveEgressJobs(egressStore, egressQueue),
    workerSecret: config.egress.worker_secret,
    rtpHosts: [config.egress.rtp_host, ...config.egress.worker_rtp_hosts],
    maxSessions: config.egress.max_tap_sessions,
    listenIp,
    log: moduleLogger('egress-taps'),
  });
  shutdown.at('egress taps', () => egressTaps.close());

  const whipServer = whip;
  const whepServer = whep;
  const agentSockets = agentServer;
  const localUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void => {
    if (url.pathname === SIGNALING_PATH && isLiveKitUpgrade(url, req.headers.authorization)) return livekit.handleUpgrade(req, socket, head, url);
    if (url.pathname === SIGNALING_PATH) return signaling.handleUpgrade(req, socket, head, url);
    if (url.pathname === AGENT_PATH && isLiveKitWorkerUpgrade(url, req.headers.authorization)) return lkWorkers.handleUpgrade(req, socket, head, url);
    if (url.pathname === AGENT_PATH) return agentSockets.handleUpgrade(req, socket, head, url);
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
  };
  const server = createHttpServer({
    twirp,
    // With a cluster, a participant's socket for a room on another node is piped there first.
    upgrade: services.cluster ? services.cluster.upgrade(localUpgrade, [SIGNALING_PATH]) : localUpgrade,
    routes: [
      { prefix: WHIP_PATH, handle: (req, res, url) => whipServer.handle(req, res, url) },
      { prefix: LIVEKIT_RTC_PATH, handle: (req, res, url) => livekit.handleHttp(req, res, url) },
      { prefix: LIVEKIT_DEMO_PATH, handle: serveLiveKitDemo },
      { prefix: LIVEKIT_SDK_PATH, handle: serveLiveKitDemo },
      { prefix: WHEP_PATH, handle: (req, res, url) => whepServer.handle(req, res, url) },
      { prefix: PLAY_PATH, handle: (req, res) => servePlayPage(req, res) },
      { prefix: EGRESS_INTERNAL_PATH, handle: (req, res, url) => egressTaps.handle(req, res, url) },
      ...(consoleServer ? [{ prefix: CONSOLE_PATH, handle: (req: IncomingMessage, res: ServerResponse, url: URL) => consoleServer.handle(req, res, url) }] : []),
    ],
    metrics,
    log: moduleLogger('http'),
    sdk: browserSdk,
    ...(config.dev_keys
      ? {
          devToken: (room: string, identity: string) =>
            mintToken(DEV_API_KEY, DEV_API_SECRET, {
              identity,
              name: identity,
              video: { roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true },
            }),
        }
      : {}),
    health: async () => {
      const redisOk = await redis.ping().then(() => true, () => false);
      const workers = pool.workerPids.length;
      return { ok: redisOk && workers > 0, details: { redis: redisOk, workers, rooms: rooms.activeRooms } };
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.bind, () => {
      server.off('error', reject);
      resolve();
    });
  });
  shutdown.at(
    'http server',
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive sockets would hold close() open; active requests get a moment to finish.
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      }),
  );
  const port = (server.address() as AddressInfo).port;
  // Announced to the other nodes only now that it can answer them (src/gateway/cluster.ts).
  if (services.cluster) await services.cluster.registry.start();
  const url = `http://${settings.urlHost}:${port}`;
  let egressWorker: SupervisedWorker | undefined;
  if (config.egress.worker) {
    // The two-command quick start records: one worker child beside the gateway.
    const worker = superviseEgressWorker(
      {
        ROOMGATE_REDIS_URL: redisUrl,
        ROOMGATE_EGRESS_GATEWAY_URL: config.egress.gateway_url ?? `http://${settings.localApiHost}:${port}`,
        ROOMGATE_PORT: String(port),
        ROOMGATE_DATA_DIR: config.data_dir,
        ROOMGATE_LOG_LEVEL: config.log_level,
        ...(config.config_file ? { ROOMGATE_CONFIG: config.config_file } : {}),
      },
      { log: moduleLogger('egress-worker-child') },
    );
    // First in the shutdown: the worker drains its egresses while the rooms still send media.
    shutdown.at('egress worker', () => worker.stop(settings.egressDrainMs));
    egressWorker = worker;
  }
  return {
    url,
    port,
    rtmpPort: rtmp?.port ?? 0,
    sipPort: sipServer?.port ?? 0,
    get egressWorkerPid() {
      return egressWorker?.pid ?? 0;
    },
    connections: () => signaling.connectionCount + livekit.connectionCount,
  };
}
