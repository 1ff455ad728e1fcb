// The RTMP listener (node-media-server v4's RTMP server, without its HTTP/admin/store parts) and
// the life of each RTMP publish: key check, probe, pipeline into the room, end.
//
// node-media-server keeps its state in a process-global Context, so there is one RTMP server per
// process. We run its RTMP session and parser on our own listener (its server calls process.exit
// when the port is taken) and handle its quirks: prePublish cannot refuse (we destroy the session,
// and its later postPublish/donePublish are ignored), donePublish waits 30 s unless the grace
// window is zeroed, and a second publisher on a live path is refused unless the first is evicted.
//
// Before a key is checked anyone can talk to this port, so the parser is fenced in: an exception in
// it ends that connection (not the process), declared message sizes are capped, and a connection
// must publish in time; pending connections are bounded per address and evicted oldest-first
// (admission.ts).
import net from 'node:net';
import { IngressInput, type IngressInfo } from '@livekit/protocol';
import Context from 'node-media-server/src/core/context.js';
import nmsLogger from 'node-media-server/src/core/logger.js';
import type BaseSession from 'node-media-server/src/session/base_session.js';
import RtmpSession from 'node-media-server/src/session/rtmp_session.js';
import type { Logger } from '../../logger.ts';
import type { IngressStore } from '../../store/IngressStore.ts';
import type { IngressSessions } from '../IngressSessions.ts';
import { PendingConnections, type AdmissionLimits } from './admission.ts';
import { RtmpPublish } from './RtmpPublish.ts';

export interface RtmpServerOptions {
  port: number;
  bind: string;
  store: IngressStore;
  sessions: IngressSessions;
  log: Logger;
  /** Most concurrent RTMP publishers; more are refused (0 = no limit). */
  maxPublishers?: number;
  /** Bounds on connections that have not published yet (defaults: DEFAULT_ADMISSION). */
  admission?: Partial<AdmissionLimits>;
}

export const DEFAULT_ADMISSION: AdmissionLimits = { maxPending: 64, maxPendingPerIp: 8, firstBytesMs: 3000, publishMs: 10_000 };

let running: RtmpIngestServer | undefined;

/** Largest RTMP message accepted (a 4K keyframe is a few MB). */
const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
/** Message buffers one connection may hold across its chunk streams. */
const MAX_BUFFERED_BYTES = 24 * 1024 * 1024;

export class RtmpIngestServer {
  readonly #opts: RtmpServerOptions;
  readonly #tcp: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** Connections that have not been accepted as publishers yet. */
  readonly #pending: PendingConnections;
  /** Live publishes by node-media-server session id. */
  readonly #publishes = new Map<string, RtmpPublish>();
  /** Sessions refused in prePublish: their postPublish/donePublish are the library's echo. */
  readonly #refused = new Set<string>();
  readonly #listeners: [string, (s: BaseSession) => void][] = [];
  #port = 0;
  #started = false;
  #closing: Promise<void> | undefined;

  /** Built from its narrow dependencies; nothing listens until `start()`. */
  constructor(opts: RtmpServerOptions) {
    this.#opts = opts;
    this.#pending = new PendingConnections({ ...DEFAULT_ADMISSION, ...opts.admission }, (ip, reason) =>
      opts.log.info({ ip, reason }, 'pending RTMP connection closed'),
    );
    this.#tcp = net.createServer((socket) => this.#connection(socket));
  }

  get port(): number {
    return this.#port;
  }

  /** Live publishes (metrics, tests). */
  get publishCount(): number {
    return this.#publishes.size;
  }

  /** Listens on the configured port; once. */
  async start(): Promise<void> {
    if (this.#started) throw new Error('the RTMP server was started already');
    this.#started = true;
    if (running) throw new Error('an RTMP server is already running in this process (node-media-server keeps global state)');
    const opts = this.#opts;
    // The library logs with console.log at a level its constructor forces to debug: route it to pino.
    const log = opts.log;
    nmsLogger.log = (message: string, level = 'info') => {
      if (level === 'error' || level === 'warn') log.debug({ nms: level }, message);
      else log.trace({ nms: level }, message);
    };
    Context.config = { bind: opts.bind, rtmp: { port: opts.port } };
    const tcp = this.#tcp;
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
    this.#port = (tcp.address() as { port: number }).port;
    this.#on('prePublish', (s) => this.#prePublish(s));
    this.#on('postPublish', (s) => this.#postPublish(s));
    this.#on('donePublish', (s) => this.#donePublish(s));
    // Ingress streams are not for playing back over RTMP: the room is where they are watched.
    this.#on('prePlay', (s) => {
      log.info({ app: s.streamApp, ip: s.ip }, 'RTMP play refused'); // the path may hold a real key
      s.socket?.destroy();
    });
    running = this;
    log.info({ port: this.#port, bind: opts.bind }, 'RTMP ingest listening');
  }

  #connection(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.setKeepAlive(true, 5000);
    socket.setNoDelay(true);
    const session = new RtmpSession(socket);
    const parse = session.onData;
    session.onData = (data: Buffer) => {
      try {
        parse(data);
      } catch (err) {
        // node-media-server's parser throws on malformed input (no tcUrl, no stream name, bad AMF).
        this.#opts.log.info({ ip: session.ip, err: (err as Error).message }, 'malformed RTMP: connection closed');
        socket.destroy();
      }
    };
    const rtmp = session.rtmp;
    const alloc = rtmp.packetAlloc.bind(rtmp);
    rtmp.packetAlloc = () => {
      const wanted = rtmp.parserPacket.header.length;
      let held = wanted;
      for (const p of rtmp.inPackets.values()) held += p.capacity ?? 0;
      if (wanted > MAX_MESSAGE_BYTES || held > MAX_BUFFERED_BYTES) throw new Error(`RTMP message of ${wanted} bytes refused`);
      alloc();
    };
    this.#pending.admit(session.id, socket);
    socket.once('close', () => this.#sockets.delete(socket));
    session.run();
    Context.sessions.set(session.id, session);
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
    // Destroyed, not ended: a refused client must not linger in the path's publisher slot.
    s.socket?.destroy();
    // Whatever the library does next, forget the id once the socket is gone.
    s.socket?.once('close', () => setTimeout(() => this.#refused.delete(s.id), 1000));
  }

  /** Drops a publish without waiting for its FFmpeg to stop; a failed stop is logged. */
  #evict(publish: RtmpPublish): void {
    publish.evict().catch((err: unknown) => this.#opts.log.error({ err, ingress: publish.ingressId }, 'evicting an RTMP publisher failed'));
  }

  #prePublish(s: BaseSession): void {
    // A second publish on one connection would move the library's session to another path and
    // orphan the first one's bookkeeping: the connection is dropped with both.
    const existing = this.#publishes.get(s.id);
    if (existing) {
      this.#publishes.delete(s.id);
      this.#evict(existing);
      return this.#refuse(s, 'a connection may publish one stream');
    }
    // The app name is not trusted; the key (last path element) decides.
    const info: IngressInfo | undefined = this.#opts.store.byStreamKey(s.streamName);
    if (!info) return this.#refuse(s, 'unknown stream key');
    if (!info.enabled) return this.#refuse(s, 'ingress is disabled', { ingress: info.ingressId });
    if (info.inputType !== IngressInput.RTMP_INPUT) return this.#refuse(s, 'not an RTMP ingress', { ingress: info.ingressId });
    const max = this.#opts.maxPublishers ?? 0;
    const replacing = [...this.#publishes.values()].find((p) => p.ingressId === info.ingressId);
    if (max > 0 && this.#publishes.size >= max && !replacing) return this.#refuse(s, 'too many publishers', { ingress: info.ingressId });

    const broadcast = Context.broadcasts.get(s.streamPath)!;
    // No resume window: a dropped publisher ends now, and OBS's reconnect starts a fresh session.
    broadcast.publishGraceMs = 0;
    this.#pending.release(s.id);
    if (replacing) {
      // OBS reconnecting while the old TCP connection is still half-open: the new one wins at once.
      this.#opts.log.info({ ingress: info.ingressId }, 'RTMP publisher replaced by a new connection');
      this.#publishes.delete(replacing.id);
      this.#evict(replacing);
      if (broadcast.publisher && broadcast.publisher.id === replacing.id) broadcast.publisher = null;
    }
    // Whatever else still holds the path's publisher slot (a refused client, on its way out) goes.
    if (broadcast.publisher && broadcast.publisher !== s) {
      broadcast.publisher.socket?.destroy();
      broadcast.publisher = null;
    }
    const session = this.#opts.sessions.start(info, 'rtmp');
    this.#publishes.set(s.id, new RtmpPublish({ nms: s, broadcast, session, log: session.log }));
  }

  #postPublish(s: BaseSession): void {
    if (this.#refused.has(s.id)) return;
    const publish = this.#publishes.get(s.id);
    if (!publish) return;
    // The library would refuse a second publisher on a live path after this event; prePublish has
    // already emptied the path's publisher slot for ours.
    publish.begin();
  }

  #donePublish(s: BaseSession): void {
    const publish = this.#publishes.get(s.id);
    if (!publish) {
      this.#refused.delete(s.id);
      return;
    }
    this.#publishes.delete(s.id);
    publish.disconnected();
  }

  /** Publishers of an ingress, for DeleteIngress and tests. */
  publishOf(ingressId: string): RtmpPublish | undefined {
    return [...this.#publishes.values()].find((p) => p.ingressId === ingressId);
  }

  /** Evicts every publisher and stops listening. Idempotent: later calls get the first call's promise. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    for (const [event, fn] of this.#listeners) Context.eventEmitter.off(event, fn);
    this.#listeners.length = 0;
    const publishes = [...this.#publishes.values()];
    this.#publishes.clear();
    await Promise.all(publishes.map((p) => p.evict()));
    const closed = new Promise<void>((resolve) => this.#tcp.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    this.#pending.close();
    await closed;
    if (running === this) running = undefined;
    this.#opts.log.info('RTMP ingest stopped');
  }
}

