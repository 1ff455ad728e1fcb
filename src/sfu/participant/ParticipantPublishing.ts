// What the participant publishes: its tracks (one per source, as its grants allow) and its data
// producers. A track is unpublished when its producer closes, whoever closed it.
import { TrackInfo, TrackType, type ParticipantPermission, type VideoLayer } from '@livekit/protocol';
import type { types } from 'mediasoup';
import { newId } from '../../ids.ts';
import type { Logger } from '../../logger.ts';
import { rtpParametersProblem } from '../../media/codecs.ts';
import { failedPrecondition, invalidArgument, mediasoupCall, notFound, permissionDenied } from '../errors.ts';
import type { ParticipantEvents, PublishDataRequest, PublishedTrack, PublishTrackRequest, TrackSourceName } from '../ParticipantTypes.ts';
import { SOURCE_BY_NAME, SOURCE_KIND, sourceNames } from './trackSources.ts';

export interface ParticipantPublishingDeps {
  identity: string;
  log: Logger;
  /** The participant's grants as they are now (changed live by setPermission). */
  permission: () => ParticipantPermission;
  /** A send transport by id: a server one or a client one. */
  transport: (id: string) => types.Transport;
  emit: <K extends keyof ParticipantEvents & string>(event: K, ...args: ParticipantEvents[K]) => void;
}

export class ParticipantPublishing {
  readonly #deps: ParticipantPublishingDeps;
  readonly #tracks = new Map<string, PublishedTrack>();

  constructor(deps: ParticipantPublishingDeps) {
    this.#deps = deps;
  }

  get tracks(): PublishedTrack[] {
    return [...this.#tracks.values()];
  }

  get size(): number {
    return this.#tracks.size;
  }

  track(trackSid: string): PublishedTrack | undefined {
    return this.#tracks.get(trackSid);
  }

  async publishTrack(req: PublishTrackRequest, given: { sid?: string; layers?: VideoLayer[] }): Promise<{ trackSid: string }> {
    this.check(req.source, req.kind);
    const transport = this.#deps.transport(req.transportId);
    if (transport.appData.direction !== 'send') throw invalidArgument('tracks are published on a send transport');
    // Codec parameters end up in the SDP egress FFmpeg reads: only known keys and plain values.
    const codecProblem = rtpParametersProblem(req.rtpParameters);
    if (codecProblem) throw invalidArgument(codecProblem, 'rtpParameters');
    const producer = await mediasoupCall(() =>
      transport.produce({
        kind: req.kind,
        rtpParameters: req.rtpParameters as unknown as types.RtpParameters,
        paused: req.muted ?? false,
      }),
    );
    const encodings = producer.rtpParameters.encodings ?? [];
    const info = new TrackInfo({
      sid: given.sid ?? newId('TR_'),
      type: req.kind === 'audio' ? TrackType.AUDIO : TrackType.VIDEO,
      name: req.name ?? req.source,
      source: SOURCE_BY_NAME[req.source],
      muted: req.muted ?? false,
      simulcast: encodings.length > 1,
      mimeType: producer.rtpParameters.codecs[0]?.mimeType ?? '',
      width: req.width ?? 0,
      height: req.height ?? 0,
      layers: given.layers ?? [],
    });
    const track: PublishedTrack = { info, producer, ownerIdentity: this.#deps.identity };
    this.#tracks.set(info.sid, track);
    producer.observer.once('close', () => {
      if (this.#tracks.delete(info.sid)) this.#deps.emit('@trackunpublished', track);
    });
    this.#deps.log.info({ track: info.sid, kind: req.kind, source: req.source, simulcast: info.simulcast }, 'track published');
    this.#deps.emit('@trackpublished', track);
    return { trackSid: info.sid };
  }

  /** Throws unless a `kind` track from `source` may be published now (grants, one per source). */
  check(source: TrackSourceName, kind: 'audio' | 'video'): void {
    const permission = this.#deps.permission();
    if (!permission.canPublish) throw permissionDenied('this participant may not publish tracks (canPublish is false)');
    const allowed = permission.canPublishSources;
    if (allowed.length > 0 && !allowed.includes(SOURCE_BY_NAME[source])) {
      throw permissionDenied(`this participant may not publish '${source}' (allowed: ${sourceNames(allowed).join(', ')})`);
    }
    if (SOURCE_KIND[source] !== kind) throw invalidArgument(`source '${source}' must be a ${SOURCE_KIND[source]} track`);
    if (this.tracks.some((t) => t.info.source === SOURCE_BY_NAME[source])) {
      throw failedPrecondition(`a '${source}' track is already published; unpublish it first`);
    }
  }

  #published(trackSid: string): PublishedTrack {
    const track = this.#tracks.get(trackSid);
    if (!track) throw notFound(`track '${trackSid}' is not published by '${this.#deps.identity}'`);
    return track;
  }

  unpublish(trackSid: string): void {
    this.#published(trackSid).producer.close(); // the producer's close observer unpublishes it
  }

  async setMuted(trackSid: string, muted: boolean): Promise<TrackInfo> {
    const track = this.#published(trackSid);
    if (track.info.muted !== muted) {
      if (muted) await track.producer.pause();
      else await track.producer.resume();
      track.info.muted = muted;
      this.#deps.emit('@trackmuted', track);
    }
    return track.info.clone();
  }

  async publishData(req: PublishDataRequest): Promise<{ id: string }> {
    if (!this.#deps.permission().canPublishData) throw permissionDenied('this participant may not send data (canPublishData is false)');
    const transport = this.#deps.transport(req.transportId);
    if (transport.appData.direction !== 'send') throw invalidArgument('data is published on a send transport');
    const dataProducer = await mediasoupCall(() =>
      transport.produceData({
        sctpStreamParameters: req.sctpStreamParameters as unknown as types.SctpStreamParameters,
        label: req.label ?? '',
        protocol: req.protocol ?? '',
        appData: { participant: this.#deps.identity },
      }),
    );
    this.#deps.emit('@dataproducer', dataProducer);
    return { id: dataProducer.id };
  }

  /** Unpublishes what new grants no longer allow. */
  enforce(permission: ParticipantPermission): void {
    if (!permission.canPublish) for (const t of this.tracks) t.producer.close();
    else if (permission.canPublishSources.length > 0) {
      for (const t of this.tracks) if (!permission.canPublishSources.includes(t.info.source)) t.producer.close();
    }
  }

  /** The participant left: every track still listed is unpublished. */
  end(): void {
    for (const track of [...this.#tracks.values()]) this.#deps.emit('@trackunpublished', track);
    this.#tracks.clear();
  }
}
