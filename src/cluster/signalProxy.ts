// A participant's signaling WebSocket that lands on a node which does not host its room is piped to
// the node that does, at the HTTP upgrade, before any endpoint sees the socket: the upgrade request
// is re-sent byte for byte (token untouched; the owner authorizes) with one header naming this node,
// and from then on the two sockets are joined. Proxy rather than redirect because neither the
// roomgate SDK nor LiveKit's clients follow a redirect on a WebSocket, and a load balancer in front
// may not expose each node's address to clients. Media does not pass here: the owner's ICE
// candidates carry its own announced IP.
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { decodeJwt } from 'jose';
import type { Logger } from '../logger.ts';
import { tokenFrom } from '../livekit/signal.ts';
import type { NodeInfo } from './NodeRegistry.ts';

/** Set on a proxied upgrade: the receiving node handles it itself, so two nodes never bounce a socket. */
export const FORWARDED_HEADER = 'x-roomgate-forwarded-by';

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => void;

/** The room a join token names, read without checking the signature: it only picks the node, which checks the token. */
export function roomOfToken(token: string | undefined): string | undefined {
  if (!token) return undefined;
  try {
    const video = decodeJwt(token).video as { room?: unknown } | undefined;
    return typeof video?.room === 'string' && video.room !== '' ? video.room : undefined;
  } catch {
    return undefined;
  }
}

export function proxySignaling(opts: {
  selfId: string;
  /** Paths whose upgrades are routed by room (signaling). */
  paths: string[];
  /** The node hosting (or to host) the room; undefined: handle here. */
  locate: (room: string) => Promise<NodeInfo | undefined>;
  local: UpgradeHandler;
  log: Logger;
}): UpgradeHandler {
  return (req, socket, head, url) => {
    const room = opts.paths.includes(url.pathname) && !req.headers[FORWARDED_HEADER] ? roomOfToken(tokenFrom(url, req.headers.authorization)) : undefined;
    if (!room) return opts.local(req, socket, head, url);
    opts
      .locate(room)
      .then((node) => {
        if (socket.destroyed) return;
        if (!node || node.id === opts.selfId) return opts.local(req, socket, head, url);
        opts.log.info({ room, node: node.id }, 'signaling proxied to the room\'s node');
        pipeUpgrade(req, socket, head, node, opts.selfId, opts.log);
      })
      .catch((err: unknown) => {
        opts.log.error({ room, err: (err as Error).message }, 'could not locate the room\'s node');
        socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      });
  };
}

function pipeUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, node: NodeInfo, selfId: string, log: Logger): void {
  const target = new URL(node.url);
  const secure = target.protocol === 'https:';
  const port = Number(target.port) || (secure ? 443 : 80);
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const upstream = secure ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
  const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() === FORWARDED_HEADER) continue;
    lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  }
  lines.push(`${FORWARDED_HEADER}: ${selfId}`);
  const fail = (err: Error) => {
    log.warn({ node: node.id, err: err.message }, 'signaling proxy to the room\'s node failed');
    // Before the owner answered the client can still get a status; after, only a closed socket.
    if (!answered && socket.writable) socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  };
  let answered = false;
  upstream.once(secure ? 'secureConnect' : 'connect', () => {
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.once('data', () => (answered = true));
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  // An orderly close travels through the pipes (end); only an error or the client leaving cuts the other side.
  upstream.on('error', fail);
  socket.on('close', () => upstream.destroy());
  socket.on('error', () => upstream.destroy());
  upstream.setNoDelay(true);
  if (socket instanceof net.Socket) socket.setNoDelay(true);
}
