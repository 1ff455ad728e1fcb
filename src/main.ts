// Start-up and shutdown of one gateway, nothing else. The CLI (src/cli.ts) calls startGateway;
// tests call it too, several per process, each with its own ports, Redis and data dir.
import { isIP, type AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import os from 'node:os';
import type { Redis } from 'ioredis';
import { TokenVerifier, mintToken } from './auth/tokens.ts';
import { browserSdk } from './client/bundle.ts';
import { createHttpServer } from './api/http.ts';
import { egressService } from './api/twirp/egress.ts';
import { ingressService } from './api/twirp/ingress.ts';
import { roomService } from './api/twirp/room.ts';
import { TwirpRouter } from './api/twirp/router.ts';
import { DEV_API_KEY, DEV_API_SECRET, type Config } from './config.ts';
import { configureLogger, moduleLogger, rootLogger } from './logger.ts';
import { createMetrics } from './metrics.ts';
import { iceServersFor } from './signaling/iceServers.ts';
import { SIGNALING_PATH, SignalingServer } from './signaling/server.ts';
import { LIVEKIT_RTC_PATH, LiveKitSignaling } from './livekit/LiveKitSignaling.ts';
import { isLiveKitUpgrade } from './livekit/signal.ts';
import { LIVEKIT_DEMO_PATH, LIVEKIT_SDK_PATH, serveLiveKitDemo } from './livekit/demo.ts';
import { RoomManager, permissionFromClaims } from './sfu/RoomManager.ts';
import { WorkerPool } from './sfu/WorkerPool.ts';
import { startEmbeddedRedis, type EmbeddedRedis } from './store/embeddedRedis.ts';
import { connectRedis, evictionPolicyWarning, redactUrl } from './store/redis.ts';
import { IngressStore } from './store/IngressStore.ts';
import { IngressSessions } from './ingress/IngressSessions.ts';
import { RtmpIngestServer } from './ingress/rtmp/RtmpServer.ts';
import { UrlIngest } from './ingress/UrlIngest.ts';
import { UrlPolicy } from './ingress/urlPolicy.ts';
import { UrlIngressProxy } from './ingress/urlProxy.ts';
import { RoomStore } from './store/RoomStore.ts';
import { WHIP_PATH, WhipServer } from './ingress/whip/WhipServer.ts';
import { PLAY_PATH, WHEP_PATH, WhepServer, servePlayPage } from './whep/WhepServer.ts';
import { WebhookNotifier } from './webhooks/WebhookNotifier.ts';
import { EgressQueue } from './egress/EgressQueue.ts';
import { jobDataKey } from './egress/jobSecrets.ts';
import { EgressStore } from './egress/EgressStore.ts';
import { EgressLauncher } from './egress/EgressLauncher.ts';
import { autoEgress } from './egress/autoEgress.ts';
import { EGRESS_INTERNAL_PATH, EgressTaps, egressRoomLookup, liveEgressJobs } from './egress/EgressTaps.ts';
import { superviseEgressWorker, type SupervisedWorker } from './egress/workerChild.ts';
import { AgentDispatcher } from './agents/server/AgentDispatcher.ts';
import { AgentServer } from './agents/server/AgentServer.ts';
import { AGENT_JOB_ATTRIBUTE, AGENT_NAME_ATTRIBUTE, AGENT_PATH } from './agents/protocol.ts';
import { agentDispatchService } from './api/twirp/agentDispatch.ts';
import { CONSOLE_PATH, ConsoleServer } from './console/ConsoleServer.ts';
import { newSecret } from './ids.ts';

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

/** Where publishers reach this gateway: configured, else from the announced IP or bind address. */
function publicIngestUrls(config: Config): { rtmp: string; whip: string } {
  const bindHost = config.bind === '0.0.0.0' || config.bind === '::' ? os.hostname() : config.bind;
  const host = config.rtc.announced_ip ?? bindHost;
  const bracketed = host.includes(':') ? `[${host}]` : host;
  return {
    rtmp: config.rtmp.base_url ?? `rtmp://${bracketed}:${config.rtmp.port}/live`,
    whip: config.whip.base_url ?? `http://${bracketed}:${config.port}/w`,
  };
}

export async function startGateway(config: Config, opts: StartOptions = {}): Promise<Gateway> {
  if (opts.configureLogging !== false) configureLogger(config.log_level);
  const log = moduleLogger('gateway', { node: config.node_id });
  if (config.dev_keys) {
    log.warn({ apiKey: DEV_API_KEY }, 'using the built-in development API key; do not expose this gateway');
    if (config.log_level !== 'silent') process.stderr.write(`${DEV_KEY_WARNING}\n`);
  }

  // Each step registers its undo, so a failure half-way leaves nothing running behind.
  const undo: (() => Promise<void> | void)[] = [];
  const unwind = async () => {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (err) {
        log.error({ err }, 'shutdown step failed');
      }
    }
  };

  try {
    let embedded: EmbeddedRedis | undefined;
    let redisUrl = config.redis.url;
    if (!redisUrl) {
      embedded = await startEmbeddedRedis({
        dataDir: config.data_dir,
        port: config.redis.embedded_port,
        log: moduleLogger('redis'),
      });
      undo.push(() => embedded!.stop());
      redisUrl = embedded.url;
    }
    const redis: Redis = await connectRedis(redisUrl);
    undo.push(async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    const policyWarning = await evictionPolicyWarning(redis);
    if (policyWarning) log.warn({ redis: redactUrl(redisUrl) }, policyWarning);

    const pool = await WorkerPool.create({
      count: config.rtc.workers,
      rtcMinPort: config.rtc.min_port,
      rtcMaxPort: config.rtc.max_port,
      log: moduleLogger('workers'),
    });
    undo.push(() => pool.close());

    const listenIp = config.bind === 'localhost' ? '127.0.0.1' : isIP(config.bind) ? config.bind : '0.0.0.0';
    const iceConfig = {
      stunUrls: config.rtc.stun_urls,
      turnUrls: config.turn.urls,
      turnSecret: config.turn.secret,
      turnTtl: config.turn.ttl,
    };
    const iceServers = (identity: string) => iceServersFor(iceConfig, identity);

    let rtmpServer: RtmpIngestServer | undefined;
    let signaling: SignalingServer | undefined; // created below; the gauge reads it when scraped
    let livekitSignaling: LiveKitSignaling | undefined;
    const metrics = createMetrics({
      activeRooms: () => rooms.activeRooms,
      participants: () => rooms.participantCount,
      connections: () => (signaling?.connectionCount ?? 0) + (livekitSignaling?.connectionCount ?? 0),
    });
    const webhookKey = config.webhook.api_key ?? Object.keys(config.keys)[0]!;
    const webhooks = new WebhookNotifier({
      urls: config.webhook.urls,
      apiKey: webhookKey,
      apiSecret: config.keys[webhookKey]!,
      log: moduleLogger('webhooks'),
      metrics,
    });
    undo.push(() => webhooks.close());

    // Egress: the API queues jobs; workers (separate processes) pull media through the taps. The
    // rooms start auto egress (CreateRoom `egress`) through the same launcher as StartEgress.
    const egressQueue = new EgressQueue(redisUrl, jobDataKey(config.egress.worker_secret));
    undo.push(() => egressQueue.close());
    const egressStore = new EgressStore(redis);
    const egressLauncher = new EgressLauncher({ store: egressStore, queue: egressQueue, webhooks, log: moduleLogger('egress') });

    const rooms = new RoomManager({
      store: new RoomStore(redis),
      pool,
      node: config.node_id,
      defaults: {
        emptyTimeout: config.room.empty_timeout,
        departureTimeout: config.room.departure_timeout,
        maxParticipants: config.room.max_participants,
      },
      transport: {
        listenIp,
        ...(config.rtc.announced_ip ? { announcedIp: config.rtc.announced_ip } : {}),
        iceServers,
      },
      autoEgress: autoEgress({ launcher: egressLauncher, s3: config.egress.s3 }),
      log: moduleLogger('rooms'),
    });
    rooms.on('roomstarted', (room) => webhooks.notify('room_started', { room }));
    rooms.on('roomfinished', (room) => webhooks.notify('room_finished', { room }));
    rooms.on('participantjoined', (room, participant) => webhooks.notify('participant_joined', { room, participant }));
    rooms.on('participantleft', (room, participant) => webhooks.notify('participant_left', { room, participant }));
    rooms.on('trackpublished', (room, participant, track) => webhooks.notify('track_published', { room, participant, track }));
    rooms.on('trackunpublished', (room, participant, track) => webhooks.notify('track_unpublished', { room, participant, track }));
    await rooms.restore();

    const agentKey = Object.keys(config.keys)[0]!;
    const agents = new AgentDispatcher({
      rooms,
      webhooks,
      log: moduleLogger('agents'),
      offerTimeoutMs: config.agents.offer_timeout * 1000,
      // Scoped to joining the job's room: no `agent` grant (kind "agent" is what marks the
      // participant; the grant would let the token register workers on /agent), and short-lived,
      // since the worker joins right away and a reconnect resumes the session.
      mintJoinToken: ({ room, identity, agentName, jobId }) =>
        mintToken(agentKey, config.keys[agentKey]!, {
          identity,
          name: agentName,
          kind: 'agent',
          attributes: { [AGENT_JOB_ATTRIBUTE]: jobId, [AGENT_NAME_ATTRIBUTE]: agentName },
          video: { roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true, canUpdateOwnMetadata: true },
          ttl: 600,
        }),
    });
    undo.push(() => agents.close());
    rooms.on('roomstarted', (room) => agents.roomStarted(room));
    rooms.on('roomfinished', (room) => agents.roomFinished(room));

    const verifier = new TokenVerifier(config.keys);
    // Joins pass the dispatcher: a token's roomConfig.agents dispatches, and an agent whose job ended may not join.
    const joiner = {
      join: async (claims: Parameters<RoomManager['join']>[0], sink: Parameters<RoomManager['join']>[1]) => {
        agents.checkAgentJoin(claims);
        const joined = await rooms.join(claims, sink);
        agents.participantJoined(claims, joined.room.info());
        return joined;
      },
      resume: (claims: Parameters<RoomManager['resume']>[0], sink: Parameters<RoomManager['resume']>[1]) => rooms.resume(claims, sink),
    };
    const signalingServer = new SignalingServer({ verifier, rooms: joiner, iceServers, log: moduleLogger('signaling') });
    signaling = signalingServer;
    undo.push(() => signalingServer.close());
    // Stock LiveKit clients on the same path, told apart at the upgrade.
    const livekit = new LiveKitSignaling({ verifier, rooms: joiner, iceServers, nodeId: config.node_id, log: moduleLogger('livekit') });
    livekitSignaling = livekit;
    undo.push(() => livekit.close());
    // Rooms close before the sockets do, so participants are told SERVER_SHUTDOWN.
    undo.push(() => rooms.close());

    const ingress = new IngressStore(redis);
    await ingress.load();
    const ingressSessions = new IngressSessions({ store: ingress, rooms, webhooks, log: moduleLogger('ingress') });
    await ingressSessions.resetStale();
    undo.push(async () => {
      ingressSessions.close();
      await ingressSessions.flush();
    });
    if (config.rtmp.enabled) {
      const rtmp = await RtmpIngestServer.start({
        port: config.rtmp.port,
        bind: config.bind === 'localhost' ? '127.0.0.1' : config.bind,
        store: ingress,
        sessions: ingressSessions,
        maxPublishers: config.rtmp.max_publishers,
        admission: {
          maxPending: config.rtmp.max_pending,
          maxPendingPerIp: config.rtmp.max_pending_per_ip,
          firstBytesMs: config.rtmp.first_bytes_timeout * 1000,
          publishMs: config.rtmp.publish_timeout * 1000,
        },
        log: moduleLogger('rtmp'),
      });
      undo.push(() => rtmp.close());
      rtmpServer = rtmp;
    }
    const listen = { listenIp, ...(config.rtc.announced_ip ? { announcedIp: config.rtc.announced_ip } : {}) };
    const whip = new WhipServer({
      streamKeys: ingress,
      sessions: ingressSessions,
      rooms,
      transport: listen,
      iceServers,
      maxSessions: config.whip.max_sessions,
      log: moduleLogger('whip'),
    });
    const whep = new WhepServer({
      verify: (token) => verifier.verify(token),
      canSubscribe: (claims, room) => claims.video?.room === room && claims.video.roomJoin === true && permissionFromClaims(claims).canSubscribe,
      rooms,
      createRouter: (mediaCodecs) => pool.createRouter({ whep: true }, mediaCodecs),
      transport: listen,
      iceServers,
      maxSessions: config.whep.max_sessions,
      log: moduleLogger('whep'),
    });
    undo.push(() => {
      whip.close();
      whep.close();
    });
    const agentServer = new AgentServer({ verifier, dispatcher: agents, log: moduleLogger('agents') });
    undo.push(() => agentServer.close());
    const twirp = new TwirpRouter({ verifier, metrics, log: moduleLogger('twirp') });
    twirp.register(roomService(rooms));
    twirp.register(agentDispatchService(agents));
    const urlPolicy = new UrlPolicy(config.ingress.url_allow);
    const urlProxy = await UrlIngressProxy.start(urlPolicy, moduleLogger('ingress-proxy'));
    undo.push(() => urlProxy.close());
    const urlIngest = new UrlIngest(ingressSessions, moduleLogger('ingress'), {
      policy: urlPolicy,
      proxy: urlProxy,
      maxSessions: config.ingress.url_max_sessions,
    });
    undo.push(() => urlIngest.close());
    twirp.register(
      ingressService(ingress, publicIngestUrls(config), {
        stop: (id) => ingressSessions.stop(id),
        // The run reports its failures in the ingress state; anything else is logged here.
        startUrl: (info) => {
          urlIngest.start(info).catch((err: unknown) => log.error({ err, ingress: info.ingressId }, 'URL ingress run failed'));
        },
        urlFull: () => urlIngest.full,
      }),
    );

    twirp.register(
      egressService({
        store: egressStore,
        queue: egressQueue,
        launcher: egressLauncher,
        rooms: egressRoomLookup(rooms),
        s3: config.egress.s3,
        webhooks,
      }),
    );
    const costs = {
      track: config.egress.cost_track,
      track_composite: config.egress.cost_track_composite,
      participant: config.egress.cost_participant,
      room_composite: config.egress.cost_room_composite,
    };
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
                return { ...w, jobs: jobs.map((j) => j.egressId), reservedCpu: jobs.reduce((n, j) => n + costs[j.kind], 0) };
              });
              return { ...o, workers, maxCpu: config.egress.max_cpu };
            },
          },
          previewToken: (room) =>
            mintToken(agentKey, config.keys[agentKey]!, {
              identity: `console-preview-${newSecret(48)}`,
              video: { roomJoin: true, room, canSubscribe: true, canPublish: false, canPublishData: false, hidden: true },
              ttl: 60,
            }),
          log: moduleLogger('console'),
        })
      : undefined;
    if (consoleServer) undo.push(() => consoleServer.close());
    const egressTaps = new EgressTaps({
      rooms,
      jobs: liveEgressJobs(egressStore, egressQueue),
      workerSecret: config.egress.worker_secret,
      rtpHosts: [config.egress.rtp_host, ...config.egress.worker_rtp_hosts],
      maxSessions: config.egress.max_tap_sessions,
      listenIp,
      log: moduleLogger('egress-taps'),
    });
    undo.push(() => egressTaps.close());

    const server = createHttpServer({
      twirp,
      upgrade: (req, socket, head, url) => {
        if (url.pathname === SIGNALING_PATH && isLiveKitUpgrade(url, req.headers.authorization)) return livekit.handleUpgrade(req, socket, head, url);
        if (url.pathname === SIGNALING_PATH) return signalingServer.handleUpgrade(req, socket, head, url);
        if (url.pathname === AGENT_PATH) return agentServer.handleUpgrade(req, socket, head, url);
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      },
      routes: [
        { prefix: WHIP_PATH, handle: (req, res, url) => whip.handle(req, res, url) },
        { prefix: LIVEKIT_RTC_PATH, handle: (req, res, url) => livekit.handleHttp(req, res, url) },
        { prefix: LIVEKIT_DEMO_PATH, handle: serveLiveKitDemo },
        { prefix: LIVEKIT_SDK_PATH, handle: serveLiveKitDemo },
        { prefix: WHEP_PATH, handle: (req, res, url) => whep.handle(req, res, url) },
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
    undo.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          // Idle keep-alive sockets would hold close() open; active requests get a moment to finish.
          server.closeIdleConnections();
          setTimeout(() => server.closeAllConnections(), 2000).unref();
        }),
    );
    // Runs early (after the egress worker's drain), before the server's close (upgraded sockets would otherwise hold it open).
    // Publishers go first, so ingresses end INACTIVE with their FFmpeg gone; then the rooms, whose
    // participants hear SERVER_SHUTDOWN. Every close is idempotent: the steps registered above
    // run again harmlessly.
    undo.push(async () => {
      whip.close();
      whep.close();
      await Promise.all([rtmpServer?.close(), urlIngest.close()]);
      ingressSessions.close();
      // Before the rooms and the worker sockets: running jobs end with agent_job_ended and their
      // workers hear terminate, rather than seeing the sockets drop (which reads as worker death).
      agents.close();
      rooms.close();
      signalingServer.close();
      livekit.close();
      agentServer.close();
    });
    const port = (server.address() as AddressInfo).port;
    const host = config.bind.includes(':') ? `[${config.bind}]` : config.bind;
    const url = `http://${host}:${port}`;
    let egressWorker: SupervisedWorker | undefined;
    if (config.egress.worker) {
      // The two-command quick start records: one worker child beside the gateway.
      const apiHost = config.bind === '0.0.0.0' || config.bind === '::' ? '127.0.0.1' : host;
      const worker = superviseEgressWorker(
        {
          ROOMGATE_REDIS_URL: redisUrl,
          ROOMGATE_EGRESS_GATEWAY_URL: config.egress.gateway_url ?? `http://${apiHost}:${port}`,
          ROOMGATE_PORT: String(port),
          ROOMGATE_DATA_DIR: config.data_dir,
          ROOMGATE_LOG_LEVEL: config.log_level,
          ...(config.config_file ? { ROOMGATE_CONFIG: config.config_file } : {}),
        },
        { log: moduleLogger('egress-worker-child') },
      );
      // First in the shutdown: the worker drains its egresses while the rooms still send media.
      undo.push(() => worker.stop((config.egress.drain_timeout + 10) * 1000));
      egressWorker = worker;
    }
    log.info(
      { url, redis: redactUrl(redisUrl), workers: config.rtc.workers, webhooks: config.webhook.urls.length },
      'roomgate listening',
    );

    let closing: Promise<void> | undefined;
    return {
      config,
      url,
      port,
      redisUrl,
      rooms,
      agents,
      rtmpPort: rtmpServer?.port ?? 0,
      get mediaWorkerPids() {
        return pool.workerPids;
      },
      get egressWorkerPid() {
        return egressWorker?.pid ?? 0;
      },
      close() {
        closing ??= (async () => {
          log.info('shutting down');
          await unwind();
          log.info('stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

export { rootLogger };
