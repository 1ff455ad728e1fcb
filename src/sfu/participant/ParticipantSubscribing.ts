// What the participant receives: a consumer per subscribed track (when grants, its capabilities and
// its own choices allow), the server's data channel towards it, and what it was told about each,
// re-sent when a session resumes.
import type { ParticipantPermission } from '@livekit/protocol';
import type { types } from 'mediasoup';
import { failedPrecondition, notFound } from '../errors.ts';
import type { ConsumerRef, ParticipantSignalName, ParticipantSignals, PreferredLayersRequest, PublishedTrack } from '../ParticipantTypes.ts';

export interface ParticipantSubscribingDeps {
  /** The room's own Router, where every producer lives. */
  router: types.Router;
  /** Makes `producer` consumable on `target`; a no-op once done. */
  pipe: (producer: types.Producer, target: types.Router) => Promise<void>;
  recvTransport: () => types.WebRtcTransport | undefined;
  recvRouter: () => types.Router | undefined;
  closed: () => boolean;
  permission: () => ParticipantPermission;
  send: <K extends ParticipantSignalName>(event: K, data: ParticipantSignals[K]) => void;
  /** A freed receive mid the client can take back (MidReuse), or undefined for a new one. */
  takeMid: (kind: 'audio' | 'video') => string | undefined;
}

export interface HeldOffers {
  consumers: ParticipantSignals['newConsumer'][];
  dataConsumers: ParticipantSignals['newDataConsumer'][];
}

export class ParticipantSubscribing {
  readonly #deps: ParticipantSubscribingDeps;
  /** consumerId → consumer; consumer.appData.trackSid names the track. */
  readonly #consumers = new Map<string, types.Consumer>();
  readonly #dataConsumers: types.DataConsumer[] = [];
  /** What the client was told about each consumer / data channel, re-sent on a resumed session. */
  readonly #consumerOffers = new Map<string, ParticipantSignals['newConsumer']>();
  readonly #dataOffers: ParticipantSignals['newDataConsumer'][] = [];
  /** Track sids with a consume in flight, so two triggers cannot create two consumers. */
  readonly #subscribing = new Set<string>();
  /** Explicit subscribe/unsubscribe choices; tracks not in here follow auto-subscribe. */
  readonly #choices = new Map<string, boolean>();
  #rtpCapabilities: types.RtpCapabilities | undefined;

  constructor(deps: ParticipantSubscribingDeps) {
    this.#deps = deps;
  }

  set rtpCapabilities(caps: types.RtpCapabilities) {
    this.#rtpCapabilities = caps;
  }

  offers(): HeldOffers {
    return { consumers: [...this.#consumerOffers.values()], dataConsumers: [...this.#dataOffers] };
  }

  /** Subscribes to another participant's track when grants, capabilities and choices allow. */
  async subscribeTo(track: PublishedTrack): Promise<void> {
    const transport = this.#deps.recvTransport();
    const caps = this.#rtpCapabilities;
    if (this.#deps.closed() || !transport || !caps || !this.#deps.permission().canSubscribe) return;
    const sid = track.info.sid;
    if (this.#choices.get(sid) === false || this.#subscribing.has(sid)) return;
    if ([...this.#consumers.values()].some((c) => c.appData.trackSid === sid)) return;
    if (track.producer.closed || !this.#deps.router.canConsume({ producerId: track.producer.id, rtpCapabilities: caps })) return;
    this.#subscribing.add(sid);
    let consumer: types.Consumer;
    try {
      const router = this.#deps.recvRouter();
      if (router && router !== this.#deps.router) await this.#deps.pipe(track.producer, router);
      const mid = this.#deps.takeMid(track.producer.kind);
      consumer = await transport.consume({
        producerId: track.producer.id,
        // The latest: a ready() while the producer was piped over may have replaced them.
        rtpCapabilities: this.#rtpCapabilities ?? caps,
        ...(mid !== undefined ? { mid } : {}),
        paused: true, // resumed by the client once its side is ready, then a keyframe is requested
        appData: { trackSid: sid },
      });
    } finally {
      this.#subscribing.delete(sid);
    }
    // Things may have changed while mediasoup worked: left, unsubscribed, grant revoked.
    if (this.#deps.closed() || this.#choices.get(sid) === false || !this.#deps.permission().canSubscribe) {
      consumer.close();
      return;
    }
    this.#consumers.set(consumer.id, consumer);
    const gone = () => this.#close(consumer);
    consumer.on('producerclose', gone);
    consumer.on('transportclose', gone);
    // Whether a video reaches the subscriber (LiveKit's stream_state): not while every stream of
    // its publisher scores 0 (mediasoup's score of a stream that went quiet), though neither side
    // paused it. Pauses by either side are no news (a mute has its own signal). mediasoup 3.8.4
    // keeps a simulcast consumer on its last layer then (no layerschange) and never drops the
    // lowest layer for bandwidth, so the score is the one signal. Audio is left out: a silent
    // Opus stream with DTX may score low without being gone.
    // Sent on changes only, from active (what clients assume of a new subscription).
    if (consumer.kind === 'video') {
      let last: 'active' | 'paused' = 'active';
      consumer.on('score', ({ producerScores }) => {
        if (consumer.paused || consumer.producerPaused || producerScores.length === 0) return;
        const state = producerScores.every((s: number) => s === 0) ? 'paused' : 'active';
        if (state === last) return;
        last = state;
        this.#deps.send('streamState', { trackSid: sid, participantIdentity: track.ownerIdentity, state });
      });
    }
    const offer: ParticipantSignals['newConsumer'] = {
      consumerId: consumer.id,
      producerId: track.producer.id,
      trackSid: sid,
      participantIdentity: track.ownerIdentity,
      kind: consumer.kind,
      rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown>,
      producerPaused: consumer.producerPaused,
    };
    this.#consumerOffers.set(consumer.id, offer);
    this.#deps.send('newConsumer', offer);
  }

  setSubscription(trackSid: string, subscribe: boolean): void {
    this.#choices.set(trackSid, subscribe);
    if (!subscribe) for (const c of [...this.#consumers.values()]) if (c.appData.trackSid === trackSid) this.#close(c);
  }

  /** Closes every consumer (subscribing was revoked). */
  closeAll(): void {
    for (const c of [...this.#consumers.values()]) this.#close(c);
  }

  #close(consumer: types.Consumer): void {
    if (!this.#consumers.delete(consumer.id)) return;
    this.#consumerOffers.delete(consumer.id);
    consumer.close();
    this.#deps.send('consumerClosed', { consumerId: consumer.id, trackSid: String(consumer.appData.trackSid) });
  }

  #consumer(id: string): types.Consumer {
    const c = this.#consumers.get(id);
    if (!c) throw notFound(`consumer '${id}' not found`);
    return c;
  }

  async resume({ consumerId }: ConsumerRef): Promise<void> {
    const c = this.#consumer(consumerId);
    await c.resume();
    if (c.kind === 'video') await c.requestKeyFrame().catch(() => undefined);
  }

  async pause({ consumerId }: ConsumerRef): Promise<void> {
    await this.#consumer(consumerId).pause();
  }

  async setPreferredLayers({ consumerId, spatialLayer, temporalLayer }: PreferredLayersRequest): Promise<void> {
    const c = this.#consumer(consumerId);
    if (c.type !== 'simulcast' && c.type !== 'svc') throw failedPrecondition('this consumer has no layers');
    await c.setPreferredLayers({ spatialLayer, ...(temporalLayer !== undefined ? { temporalLayer } : {}) });
  }

  /** The server's data channel towards this participant, fed by the room's data relay. */
  async openDataChannel(relayProducer: types.DataProducer): Promise<void> {
    const transport = this.#deps.recvTransport();
    if (!transport || this.#deps.closed()) return;
    const dc = await transport.consumeData({ dataProducerId: relayProducer.id });
    if (this.#deps.closed()) {
      dc.close();
      return;
    }
    this.#dataConsumers.push(dc);
    const offer: ParticipantSignals['newDataConsumer'] = {
      id: dc.id,
      dataProducerId: relayProducer.id,
      sctpStreamParameters: dc.sctpStreamParameters as unknown as Record<string, unknown>,
      label: dc.label,
      protocol: dc.protocol,
      reliable: true,
    };
    this.#dataOffers.push(offer);
    this.#deps.send('newDataConsumer', offer);
  }

  /** The participant left; its transports took the consumers with them. */
  end(): void {
    this.#consumers.clear();
  }
}
