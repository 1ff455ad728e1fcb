// The participant's transports: the WebRTC transports its client asked for (at most one receiving,
// possibly on an overflow router) and the send transports the server opened for it (an ingress
// PlainTransport, a WHIP publisher's WebRtcTransport). All close with the participant.
import type { types } from 'mediasoup';
import type { Logger } from '../../logger.ts';
import { createServerWebRtcTransport } from '../../media/webrtcTransport.ts';
import { failedPrecondition, mediasoupCall, notFound, resourceExhausted } from '../errors.ts';
import type { ConnectTransportRequest, IceServer, TransportRef, TransportSettings } from '../ParticipantTypes.ts';

export interface ParticipantTransportsDeps {
  identity: string;
  /** The room's own Router: send transports and server transports. */
  router: types.Router;
  /** The Router a new receive transport goes on. */
  receiverRouter: () => Promise<types.Router>;
  settings: TransportSettings;
  log: Logger;
  closed: () => boolean;
  /** A receive transport exists: queued subscriptions may proceed. */
  recvReady: () => void;
}

export interface CreatedTransport {
  id: string;
  iceParameters: types.IceParameters;
  iceCandidates: types.IceCandidate[];
  dtlsParameters: types.DtlsParameters;
  sctpParameters: types.SctpParameters | undefined;
  iceServers: IceServer[];
}

export class ParticipantTransports {
  readonly #deps: ParticipantTransportsDeps;
  readonly #clients = new Map<string, types.WebRtcTransport>();
  /** Transports the server opened for this participant, not its client. */
  readonly #server = new Map<string, types.Transport>();
  /** The Router of the receive transport, once there is one. */
  #recvRouter: types.Router | undefined;

  constructor(deps: ParticipantTransportsDeps) {
    this.#deps = deps;
  }

  async create(direction: 'send' | 'recv'): Promise<CreatedTransport> {
    if (direction === 'recv' && [...this.#clients.values()].some((t) => t.appData.direction === 'recv')) {
      throw failedPrecondition('a receive transport already exists');
    }
    if (this.#clients.size >= 4) throw resourceExhausted('at most 4 transports per participant');
    const { settings, identity } = this.#deps;
    // Receivers are what outgrows a worker, so only they may go to another one; publishing stays on the room's.
    const router = direction === 'recv' ? await this.#deps.receiverRouter() : this.#deps.router;
    const transport = await router.createWebRtcTransport({
      listenIps: [{ ip: settings.listenIp, ...(settings.announcedIp ? { announcedIp: settings.announcedIp } : {}) }],
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      enableSctp: true,
      numSctpStreams: { OS: 1024, MIS: 1024 },
      initialAvailableOutgoingBitrate: 1_000_000,
      appData: { direction, participant: identity },
    });
    if (this.#deps.closed()) {
      transport.close(); // replaced or removed while mediasoup worked
      throw failedPrecondition('participant has left');
    }
    this.#clients.set(transport.id, transport);
    if (direction === 'recv') this.#recvRouter = router;
    transport.on('dtlsstatechange', (state) => {
      if (state === 'failed' || state === 'closed') this.#deps.log.warn({ transport: transport.id, state }, 'transport DTLS ended');
    });
    transport.observer.once('close', () => this.#clients.delete(transport.id));
    if (direction === 'recv') this.#deps.recvReady();
    return {
      id: transport.id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
      sctpParameters: transport.sctpParameters,
      iceServers: settings.iceServers(identity),
    };
  }

  /** A client transport by id (not_found otherwise). */
  client(id: string): types.WebRtcTransport {
    const t = this.#clients.get(id);
    if (!t) throw notFound(`transport '${id}' not found`);
    return t;
  }

  /** A transport that may carry what this participant publishes: a server one or a client one. */
  publishing(id: string): types.Transport {
    return this.#server.get(id) ?? this.client(id);
  }

  async openPlainSend(listenIp: string): Promise<types.PlainTransport> {
    const transport = await this.#deps.router.createPlainTransport({ listenIp: { ip: listenIp }, rtcpMux: false, comedia: true });
    this.#adoptSend(transport);
    return transport;
  }

  async openWebRtcSend(appData: Record<string, unknown>): Promise<types.WebRtcTransport> {
    const transport = await createServerWebRtcTransport(this.#deps.router, this.#deps.settings, appData);
    this.#adoptSend(transport);
    return transport;
  }

  #adoptSend(transport: types.Transport): void {
    if (this.#deps.closed()) {
      transport.close();
      throw failedPrecondition('participant has left');
    }
    transport.appData.direction = 'send';
    this.#server.set(transport.id, transport);
    transport.observer.once('close', () => this.#server.delete(transport.id));
  }

  get recv(): types.WebRtcTransport | undefined {
    return [...this.#clients.values()].find((t) => t.appData.direction === 'recv');
  }

  /** The Router of the latest receive transport, kept after that transport closed. */
  get recvRouter(): types.Router | undefined {
    return this.#recvRouter;
  }

  async connect({ transportId, dtlsParameters }: ConnectTransportRequest): Promise<void> {
    await mediasoupCall(() => this.client(transportId).connect({ dtlsParameters: dtlsParameters as unknown as types.DtlsParameters }));
  }

  async restartIce({ transportId }: TransportRef): Promise<{ iceParameters: types.IceParameters }> {
    return { iceParameters: await this.client(transportId).restartIce() };
  }

  /** Closing a transport takes its producers, consumers and data channels with it. */
  closeAll(): void {
    for (const t of [...this.#clients.values(), ...this.#server.values()]) t.close();
  }
}
