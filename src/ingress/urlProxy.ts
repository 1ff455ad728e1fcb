// The HTTP proxy URL-ingress FFmpeg and ffprobe fetch through (`-http_proxy`): every connection
// they make (the first request, each redirect, each HLS playlist and segment, and HTTPS through
// CONNECT) is checked against the UrlPolicy here and sent to the address that was checked. A
// pre-check of the URL alone would miss redirects and playlists that point elsewhere.
//
// It listens on loopback only, on a port the OS picks. A refused target answers 403 to FFmpeg
// (which then fails with a generic error in the ingress state); the reason is logged here.
import http from 'node:http';
import net from 'node:net';
import type { Logger } from '../logger.ts';
import { UrlRefusedError, type UrlPolicy } from './urlPolicy.ts';

export class UrlIngressProxy {
  readonly #server: http.Server;
  readonly #policy: UrlPolicy;
  readonly #log: Logger;
  readonly #sockets = new Set<net.Socket>();

  private constructor(policy: UrlPolicy, log: Logger) {
    this.#policy = policy;
    this.#log = log;
    this.#server = http.createServer((req, res) => void this.#request(req, res).catch((err: Error) => this.#fail(res, err)));
    this.#server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      // #connect answers its own failures; anything else it throws drops the tunnel and is logged.
      this.#connect(req, socket, head).catch((err: unknown) => {
        this.#log.error({ err }, 'URL ingress tunnel failed');
        socket.destroy();
      });
    });
    this.#server.on('connection', (s: net.Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    this.#server.on('clientError', (_err, socket) => socket.destroy());
  }

  static async start(policy: UrlPolicy, log: Logger): Promise<UrlIngressProxy> {
    const proxy = new UrlIngressProxy(policy, log);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** For FFmpeg's `-http_proxy`. */
  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as net.AddressInfo).port}`;
  }

  #fail(res: http.ServerResponse, err: Error): void {
    const refused = err instanceof UrlRefusedError;
    this.#log.warn({ err: err.message }, refused ? 'URL ingress target refused' : 'URL ingress fetch failed');
    if (res.headersSent) return void res.destroy();
    res.writeHead(refused ? 403 : 502, { 'Content-Type': 'text/plain', Connection: 'close' }).end();
  }

  async #request(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      throw new UrlRefusedError(`not an absolute URL: ${String(req.url).slice(0, 100)}`);
    }
    if (target.protocol !== 'http:') throw new UrlRefusedError(`scheme ${target.protocol} through the proxy`);
    const address = await this.#policy.resolve(target.hostname);
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: target.host };
    delete headers['proxy-connection'];
    delete headers['proxy-authorization'];
    const upstream = http.request({
      host: address,
      port: Number(target.port || 80),
      method: req.method,
      path: `${target.pathname}${target.search}`,
      headers,
    });
    upstream.on('response', (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', (err) => this.#fail(res, err));
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  }

  async #connect(req: http.IncomingMessage, client: net.Socket, head: Buffer): Promise<void> {
    client.on('error', () => undefined);
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(req.url ?? '');
    try {
      if (!m) throw new UrlRefusedError(`bad CONNECT target ${String(req.url).slice(0, 100)}`);
      const address = await this.#policy.resolve(m[1]!);
      const upstream = net.connect(Number(m[2]), address);
      upstream.on('error', (err) => {
        this.#log.warn({ err: err.message, target: req.url }, 'URL ingress fetch failed');
        client.destroy();
      });
      upstream.once('connect', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      client.once('close', () => upstream.destroy());
    } catch (err) {
      const refused = err instanceof UrlRefusedError;
      this.#log.warn({ err: (err as Error).message }, refused ? 'URL ingress target refused' : 'URL ingress fetch failed');
      client.end(`HTTP/1.1 ${refused ? '403 Forbidden' : '502 Bad Gateway'}\r\nConnection: close\r\n\r\n`);
    }
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
