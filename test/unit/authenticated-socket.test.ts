// The opening sequence every WebSocket protocol shares (src/api/authenticatedSocket.ts), with a
// real ws server and client on loopback and real tokens: frames sent while the connection opens are
// replayed in arrival order ahead of later ones, and a refusal closes with the subclass's code.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AuthenticatedSocket, type Refusal, wsCloseCode } from '../../src/api/authenticatedSocket.ts';
import { WsEndpoint } from '../../src/api/wsServer.ts';
import type { Claims } from '../../src/auth/grants.ts';
import { TokenVerifier, mintToken } from '../../src/auth/tokens.ts';
import { ApiError, permissionDenied } from '../../src/errors.ts';
import { rootLogger } from '../../src/logger.ts';
import { waitFor } from '../helpers/net.ts';

const KEY = 'APIsock';
const SECRET = 'socket-secret-0123456789-0123456789';
const verifier = new TokenVerifier({ [KEY]: SECRET });

/** Holds `open` until the test releases it, so frames can be sent while the connection opens. */
class Gate {
  #release: () => void = () => undefined;
  readonly opened = new Promise<void>((resolve) => (this.#release = resolve));
  release(): void {
    this.#release();
  }
}

/** Echoes text frames; `open` waits on the gate of the identity's test, or fails for identity "crash". */
class EchoSocket extends AuthenticatedSocket {
  protected readonly missingToken = 'missing token';
  /** Every frame the socket saw, counted by a listener the opening sequence does not touch. */
  arrived = 0;
  closedCalls = 0;

  constructor(ws: WebSocket, onGone: () => void) {
    super(ws, { verifier, pingIntervalMs: 60_000, log: rootLogger() }, onGone);
    ws.on('message', () => this.arrived++);
    sockets.push(this);
  }

  protected override grant(claims: Claims): void {
    if (!claims.video?.roomJoin) throw permissionDenied('roomJoin is required');
  }

  protected async open(claims: Claims): Promise<boolean> {
    if (claims.sub === 'crash') throw new Error('open broke');
    await gates.get(claims.sub ?? '')?.opened;
    return true;
  }

  protected refused(err: unknown): Refusal {
    if (err instanceof ApiError) return { code: wsCloseCode(err.code), reason: err.message };
    return { code: 1011, reason: 'x'.repeat(200) };
  }

  protected receive(data: Buffer): void {
    this.ws.send(`echo:${data.toString('utf8')}`);
  }

  protected closed(): void {
    this.closedCalls++;
  }
}

const gates = new Map<string, Gate>();
const sockets: EchoSocket[] = [];
let server: http.Server;
let endpoint: WsEndpoint<EchoSocket>;
let base: string;

beforeAll(async () => {
  endpoint = new WsEndpoint('echo', (ws, onGone) => new EchoSocket(ws, onGone), rootLogger());
  server = http.createServer();
  server.on('upgrade', (req, socket, head) => endpoint.handleUpgrade(req, socket, head, new URL(req.url ?? '/', 'http://localhost')));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/echo`;
});

afterAll(async () => {
  await endpoint.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function token(identity: string, roomJoin = true): Promise<string> {
  return mintToken(KEY, SECRET, { identity, video: { roomJoin, room: 'r' }, ttl: 60 });
}

function connect(query: string): { ws: WebSocket; frames: string[]; closed: Promise<{ code: number; reason: string }> } {
  const ws = new WebSocket(`${base}${query}`);
  const frames: string[] = [];
  ws.on('message', (data: Buffer) => frames.push(data.toString('utf8')));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
  return { ws, frames, closed };
}

describe('authenticated socket opening', () => {
  it('replays frames sent while opening in arrival order, ahead of later frames', async () => {
    const gate = new Gate();
    gates.set('early', gate);
    const { ws, frames } = connect(`?access_token=${await token('early')}`);
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    for (const n of [1, 2, 3]) ws.send(String(n));
    const sock = await waitFor(() => sockets.find((s) => s.arrived === 3), 10_000, 'the three early frames at the server');
    // Held, not answered, while `open` waits.
    expect(frames).toEqual([]);
    gate.release();
    await waitFor(() => frames.length === 3 || undefined, 10_000, 'the replayed frames');
    ws.send('4');
    await waitFor(() => frames.length === 4 || undefined, 10_000, 'the later frame');
    expect(frames).toEqual(['echo:1', 'echo:2', 'echo:3', 'echo:4']);
    ws.close();
    await waitFor(() => sock.closedCalls === 1 || undefined, 10_000, 'closed() on the socket end');
    await waitFor(() => endpoint.connectionCount === 0 || undefined, 10_000, 'the endpoint forgetting the connection');
  });

  it('closes with 4401 on a missing or bad token and never serves the frames sent meanwhile', async () => {
    const missing = connect('');
    expect(await missing.closed).toEqual({ code: 4401, reason: 'missing token' });
    const bad = connect(`?access_token=${(await token('bad')).slice(0, -4)}AAAA`);
    bad.ws.once('open', () => bad.ws.send('too early'));
    const { code } = await bad.closed;
    expect(code).toBe(4401);
    expect(bad.frames).toEqual([]);
  });

  it('closes with 4403 when the token lacks the grant', async () => {
    const { closed, frames } = connect(`?access_token=${await token('nogrant', false)}`);
    expect(await closed).toEqual({ code: 4403, reason: 'roomJoin is required' });
    expect(frames).toEqual([]);
  });

  it('closes with the code the subclass gives a failed open, the reason cut to 123 bytes', async () => {
    const { closed } = connect(`?access_token=${await token('crash')}`);
    const { code, reason } = await closed;
    expect(code).toBe(1011);
    expect(reason).toBe('x'.repeat(123));
    const sock = sockets.at(-1)!;
    await waitFor(() => sock.closedCalls === 1 || undefined, 10_000, 'closed() after a refusal');
  });
});
