// The RTMP listener (node-media-server v4's RTMP server, without its HTTP/admin/store parts) and
// the life of each RTMP publish: key check, probe, pipeline into the room, end.
//
// node-media-server keeps its state in a process-global Context, so there is one RTMP server per
// process. Its quirks are handled here: prePublish cannot refuse (we close the session, and its
// later postPublish/donePublish are ignored), donePublish waits 30 s unless the grace window is
// zeroed, a second publisher on a live path is refused unless the first is evicted, and a failed
// listen calls process.exit (we listen ourselves).
import type { IngressInfo } from '@livekit/protocol';
import Context from 'node-media-server/src/core/context.js';
import nmsLogger from 'node-media-server/src/core/logger.js';
import NodeRtmpServer from 'node-media-server/src/server/rtmp_server.js';
import type BaseSession from 'node-media-server/src/session/base_session.js';
import type { Logger } from '../../logger.ts';
import type { IngressStore } from '../../store/IngressStore.ts';
import type { IngressSessions } from '../IngressSessions.ts';
import { RtmpPublish } from './RtmpPublish.ts';

export interface RtmpServerOptions {
  port: number;
  bind: string;
  store: IngressStore;
  sessions: IngressSessions;
  log: Logger;
  /** Most concurrent RTMP publishers; more are refused (0 = no limit). */
  maxPublishers?: number;
}

let running: RtmpIngestServer | undefined;

export class RtmpIngestServer {
  readonly #opts: RtmpServerOptions;
  readonly #nms: NodeRtmpServer;
  /** Live publishes by node-media-server session id. */
  readonly #publishes = new Map<string, RtmpPublish>();
  /** Sessions refused in prePublish: their postPublish/donePublish are the library's echo. */
  readonly #refused = new Set<string>();
  readonly #listeners: [string, (s: BaseSession) => void][] = [];
  #port = 0;

  private constructor(opts: RtmpServerOptions, nms: NodeRtmpServer) {
    this.#opts = opts;
    this.#nms = nms;
  }

  get port(): number {
    return this.#port;
  }

  /** Live publishes (metrics, tests). */
  get publishCount(): number {
    return this.#publishes.size;
  }

  static async start(opts: RtmpServerOptions): Promise<RtmpIngestServer> {
    if (running) throw new Error('an RTMP server is already running in this process (node-media-server keeps global state)');
    // The library logs with console.log at a level its constructor forces to debug: route it to pino.
    const log = opts.log;
    nmsLogger.log = (message: string, level = 'info') => {
      if (level === 'error' || level === 'warn') log.debug({ nms: level }, message);
      else log.trace({ nms: level }, message);
    };
    Context.config = { bind: opts.bind, rtmp: { port: opts.port } };
    const nms = new NodeRtmpServer();
    const server = new RtmpIngestServer(opts, nms);
    const tcp = nms.tcpServer!;
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(opts.port, opts.bind, () => {
        tcp.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      throw new Error(
        err.code === 'EADDRINUSE' ? `RTMP port ${opts.bind}:${opts.port} is already in use (set ROOMGATE_RTMP_PORT)` : `RTMP listen failed: ${err.message}`,
      );
    });
    tcp.on('error', (err) => log.error({ err: err.message }, 'RTMP server error'));
    server.#port = (tcp.address() as { port: number }).port;
    server.#on('prePublish', (s) => server.#prePublish(s));
    server.#on('postPublish', (s) => server.#postPublish(s));
    server.#on('donePublish', (s) => server.#donePublish(s));
    // Ingress streams are not for playing back over RTMP: the room is where they are watched.
    server.#on('prePlay', (s) => {
      log.info({ path: s.streamPath, ip: s.ip }, 'RTMP play refused');
      s.close();
    });
    running = server;
    log.info({ port: server.#port, bind: opts.bind }, 'RTMP ingest listening');
    return server;
  }

  #on(event: string, fn: (s: BaseSession) => void): void {
    const guarded = (s: BaseSession) => {
      try {
        fn(s);
      } catch (err) {
        this.#opts.log.error({ err, event }, 'RTMP event handler failed');
        s.close();
      }
    };
    Context.eventEmitter.on(event, guarded);
    this.#listeners.push([event, guarded]);
  }

  #refuse(s: BaseSession, why: string, extra: Record<string, unknown> = {}): void {
    this.#opts.log.info({ ip: s.ip, app: s.streamApp, ...extra }, `RTMP publish refused: ${why}`);
    this.#refused.add(s.id);
    const broadcast = Context.broadcasts.get(s.streamPath);
    if (broadcast && !broadcast.publisher) broadcast.publishGraceMs = 0;
    s.close();
    // Whatever the library does next, forget the id once the socket is gone.
    s.socket?.once('close', () => setTimeout(() => this.#refused.delete(s.id), 1000));
  }

  #prePublish(s: BaseSession): void {
    // The app name is not trusted; the key (last path element) decides.
    const info: IngressInfo | undefined = this.#opts.store.byStreamKey(s.streamName);
    if (!info) return this.#refuse(s, 'unknown stream key');
    if (!info.enabled) return this.#refuse(s, 'ingress is disabled', { ingress: info.ingressId });
    if (info.inputType !== 0) return this.#refuse(s, 'not an RTMP ingress', { ingress: info.ingressId });
    const max = this.#opts.maxPublishers ?? 0;
    const replacing = [...this.#publishes.values()].find((p) => p.ingressId === info.ingressId);
    if (max > 0 && this.#publishes.size >= max && !replacing) return this.#refuse(s, 'too many publishers', { ingress: info.ingressId });

    const broadcast = Context.broadcasts.get(s.streamPath)!;
    // No resume window: a dropped publisher ends now, and OBS's reconnect starts a fresh session.
    broadcast.publishGraceMs = 0;
    if (replacing) {
      // OBS reconnecting while the old TCP connection is still half-open: the new one wins at once.
      this.#opts.log.info({ ingress: info.ingressId }, 'RTMP publisher replaced by a new connection');
      this.#publishes.delete(replacing.id);
      replacing.evict();
      if (broadcast.publisher && broadcast.publisher.id === replacing.id) broadcast.publisher = null;
    }
    const session = this.#opts.sessions.start(info, 'rtmp');
    this.#publishes.set(s.id, new RtmpPublish({ nms: s, broadcast, session, log: session.log }));
  }

  #postPublish(s: BaseSession): void {
    if (this.#refused.has(s.id)) return;
    const publish = this.#publishes.get(s.id);
    if (!publish) return;
    // The library refuses a second publisher on a live path after this event; ours never gets there.
    publish.begin();
  }

  #donePublish(s: BaseSession): void {
    if (this.#refused.delete(s.id)) return;
    const publish = this.#publishes.get(s.id);
    if (!publish) return;
    this.#publishes.delete(s.id);
    publish.disconnected();
  }

  /** Publishers of an ingress, for DeleteIngress and tests. */
  publishOf(ingressId: string): RtmpPublish | undefined {
    return [...this.#publishes.values()].find((p) => p.ingressId === ingressId);
  }

  async close(): Promise<void> {
    for (const [event, fn] of this.#listeners) Context.eventEmitter.off(event, fn);
    this.#listeners.length = 0;
    const publishes = [...this.#publishes.values()];
    this.#publishes.clear();
    await Promise.all(publishes.map((p) => p.evict()));
    const tcp = this.#nms.tcpServer!;
    const closed = new Promise<void>((resolve) => tcp.once('close', () => resolve()));
    this.#nms.stop(); // closes the listener and destroys the remaining sockets
    await closed;
    if (running === this) running = undefined;
    this.#opts.log.info('RTMP ingest stopped');
  }
}

