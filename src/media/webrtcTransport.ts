// WebRtcTransports the server opens for HTTP-signalled peers (WHIP publishers, WHEP viewers), with
// the same listen/announced addresses as room participants get. mediasoup is ICE-lite: the peer
// does full ICE against the candidates in our answer.
import type { types } from 'mediasoup';
import type { AnswerTransport } from './sdp.ts';

export interface ListenSettings {
  listenIp: string;
  announcedIp?: string;
}

export function createServerWebRtcTransport(router: types.Router, settings: ListenSettings, appData: Record<string, unknown>): Promise<types.WebRtcTransport> {
  return router.createWebRtcTransport({
    listenIps: [{ ip: settings.listenIp, ...(settings.announcedIp ? { announcedIp: settings.announcedIp } : {}) }],
    enableUdp: true,
    enableTcp: true,
    preferUdp: true,
    initialAvailableOutgoingBitrate: 2_000_000,
    appData,
  });
}

/** The local half of an answer: ICE credentials, candidates and DTLS fingerprints. */
export function localParameters(transport: Pick<types.WebRtcTransport, 'iceParameters' | 'iceCandidates' | 'dtlsParameters'>): AnswerTransport {
  return {
    iceUfrag: transport.iceParameters.usernameFragment,
    icePwd: transport.iceParameters.password,
    candidates: transport.iceCandidates.map((c) => ({
      foundation: c.foundation,
      priority: c.priority,
      ip: c.ip,
      protocol: c.protocol,
      port: c.port,
      type: c.type,
      ...(c.tcpType ? { tcpType: c.tcpType } : {}),
    })),
    fingerprints: transport.dtlsParameters.fingerprints.map((f) => ({ algorithm: f.algorithm, value: f.value })),
  };
}

/** An ICE restart answered as WHIP/WHEP sdpfrags carry it: the new server credentials and candidates. */
export async function restartServerIce(transport: types.WebRtcTransport) {
  const ice = await transport.restartIce();
  return { iceUfrag: ice.usernameFragment, icePwd: ice.password, candidates: localParameters(transport).candidates };
}

/** One look at a transport's traffic, for a liveness rule. */
export interface TrafficTick {
  /** The counted bytes grew since the last look. */
  grew: boolean;
  /** Milliseconds since the watch began, and since the count last grew (or the watch began). */
  sinceStart: number;
  sinceChange: number;
}

/**
 * Polls a server transport's byte counter every `intervalMs` and hands each look to `onTick`,
 * which decides what silence means (WHIP: no media yet or a stall; WHEP: a viewer gone quiet).
 * mediasoup 3.8's ICE-lite has no consent timeout, so polling is the only way to notice a peer
 * that vanished. `onGone` runs when the transport closed or its stats failed; returns the stop.
 */
export function watchTraffic(
  transport: types.WebRtcTransport,
  opts: { intervalMs: number; bytes(stats: types.WebRtcTransportStat[]): number; onTick(tick: TrafficTick): void; onGone(): void },
): () => void {
  const started = Date.now();
  let lastBytes = 0;
  let lastChange = started;
  const timer = setInterval(() => {
    if (transport.closed) return opts.onGone();
    transport
      .getStats()
      .then((stats) => {
        const bytes = opts.bytes(stats);
        const now = Date.now();
        const grew = bytes > lastBytes;
        if (grew) {
          lastBytes = bytes;
          lastChange = now;
        }
        opts.onTick({ grew, sinceStart: now - started, sinceChange: now - lastChange });
      })
      .catch(() => opts.onGone());
  }, opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
