// Live ingress sessions, whatever the protocol (RTMP, URL pull, WHIP): each joins the room as the
// ingress participant, moves IngressInfo.state through LiveKit's machine and sends the ingress
// webhooks. The protocol servers only decide when media starts and stops; the state lives here,
// and its transitions are the pure functions of ingressState.ts:
//
//   INACTIVE → BUFFERING (publisher connected) → PUBLISHING (tracks in the room)
//            → INACTIVE (publisher left) | COMPLETE (URL input finished) | ERROR (with a message)
//
// One session per ingress: a new publisher on a live key replaces the old session (OBS reconnect),
// and state writes of a replaced session are dropped, so the newest session always wins.
import {
  IngressInfo,
  IngressState_Status,
  ParticipantInfo_Kind,
  ParticipantPermission,
  type IngressState,
  type InputAudioState,
  type InputVideoState,
  type TrackInfo,
} from '@livekit/protocol';
import type { PartialMessage } from '@bufbuild/protobuf';
import { KeyedQueue } from '../async.ts';
import { TypedEmitter } from '../emitter.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../logger.ts';
import type { Participant } from '../sfu/Participant.ts';
import type { SignalSink } from '../sfu/ParticipantTypes.ts';
import type { RoomManager } from '../sfu/RoomManager.ts';
import type { IngressStore } from '../store/IngressStore.ts';
import type { WebhookNotifier } from '../webhooks/WebhookNotifier.ts';
import { nowNs } from '../time.ts';
import { bufferingState, ingressStep, mayOverwrite, staleState, type IngressEndStatus, type IngressEvent, type IngressStep } from './ingressState.ts';

export type { IngressEndStatus } from './ingressState.ts';

export type IngressSessionEvents = {
  /** The session is over (publisher gone, replaced, deleted, participant removed): stop the media. */
  end: [status: IngressEndStatus, error: string | undefined];
};

/** Participant attribute of an ingress participant: the publisher's measured keyframe interval. */
export const KEYFRAME_INTERVAL_ATTRIBUTE = 'ingress.keyframe_interval_ms';

const RESOURCE_PREFIX = { rtmp: 'RT_', whip: 'WH_', url: 'UR_' } as const;
export type IngressProtocol = keyof typeof RESOURCE_PREFIX;

/** The ingress participant has no signaling connection: the server drives it. */
const SERVER_SINK: SignalSink = { send: () => undefined, close: () => undefined, superseded: () => undefined };

export class IngressSession extends TypedEmitter<IngressSessionEvents> {
  readonly resourceId: string;
  readonly ingressId: string;
  /** The definition as it was when the publisher connected (room, identity, transcoding). */
  readonly info: IngressInfo;
  readonly log: Logger;
  #state: IngressState;
  #participant: Participant | undefined;
  #ended = false;
  #gopMs = 0;
  readonly #owner: IngressSessions;
  /** How the video reaches the room (the console's health view): copied, re-encoded for B-frames, or transcoded. */
  videoHandling: 'passthrough' | 'bframes_reencoded' | 'transcoded' | undefined;

  constructor(owner: IngressSessions, info: IngressInfo, protocol: IngressProtocol, log: Logger) {
    super();
    this.#owner = owner;
    this.info = info;
    this.ingressId = info.ingressId;
    this.resourceId = newId(RESOURCE_PREFIX[protocol]);
    this.log = log.child({ ingress: info.ingressId, resource: this.resourceId });
    this.#state = bufferingState(this.resourceId, nowNs());
    this.onListenerError((event, err) => this.log.error({ event, err }, 'ingress session listener threw'));
  }

  get ended(): boolean {
    return this.#ended;
  }

  get state(): IngressState {
    return this.#state.clone();
  }

  /** The last measured keyframe interval, ms (0 before the first measurement). */
  get keyframeIntervalMs(): number {
    return this.#gopMs;
  }

  get participant(): Participant | undefined {
    return this.#participant;
  }

  /**
   * Joins the room (created if absent) as the ingress participant. Any participant holding the
   * same identity — such as the previous session of this ingress — is replaced.
   */
  async joinRoom(): Promise<Participant> {
    // An ended session must not create the room or announce a participant that is already gone.
    if (this.#ended) throw new Error('ingress session ended before joining the room');
    const { participant, room } = await this.#owner.rooms.join(
      {
        room: this.info.roomName,
        identity: this.info.participantIdentity,
        name: this.info.participantName,
        metadata: this.info.participantMetadata,
        attributes: {},
        // Publishes media only: no data channel, nothing to receive.
        permission: new ParticipantPermission({ canPublish: true, canSubscribe: false, canPublishData: false }),
        kind: ParticipantInfo_Kind.INGRESS,
      },
      SERVER_SINK,
    );
    if (participant.kind !== ParticipantInfo_Kind.INGRESS) this.log.warn('ingress participant has an unexpected kind');
    this.#state.roomId = room.sid;
    if (this.#ended) {
      participant.close('CLIENT_INITIATED');
      throw new Error('ingress session ended while joining the room');
    }
    this.#participant = participant;
    // Removed from outside (RemoveParticipant, room deleted, identity taken): the stream ends.
    participant.once('@close', (reason) => {
      if (reason !== 'CLIENT_INITIATED') this.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, `participant left: ${reason}`);
    });
    return participant;
  }

  /** Media is in the room: PUBLISHING, and the ingress_started webhook. */
  publishing(tracks: TrackInfo[]): void {
    const step = this.#step({ kind: 'publishing', tracks });
    if (!step) return;
    this.#save();
    if (!step.webhook) {
      this.log.info({ tracks: tracks.map((t) => t.sid) }, 'ingress tracks changed');
      return;
    }
    this.#owner.webhook(step.webhook, this);
    this.log.info({ tracks: tracks.map((t) => t.sid) }, 'ingress publishing');
  }

  /** Properties of the incoming stream, as measured (written through at most every few seconds). */
  updateInput(input: {
    video?: PartialMessage<InputVideoState> | undefined;
    audio?: PartialMessage<InputAudioState> | undefined;
    /** Measured keyframe interval: it bounds how long a new subscriber waits for a picture. */
    keyframeIntervalMs?: number;
  }): void {
    if (!this.#step({ kind: 'input', video: input.video, audio: input.audio })) return;
    this.#save();
    // InputVideoState has no field for it, so it is a participant attribute, updated on change only.
    const gop = input.keyframeIntervalMs ?? 0;
    if (gop > 0 && Math.abs(gop - this.#gopMs) > 100) {
      this.#gopMs = gop;
      this.#participant?.applyUpdate({ attributes: { [KEYFRAME_INTERVAL_ATTRIBUTE]: String(gop) } });
      if (gop > 2500) this.log.warn({ keyframeIntervalMs: gop }, 'keyframe interval above 2 s: subscribers wait that long for a picture');
    }
  }

  /**
   * Ends the session once: the participant leaves, the state is written, ingress_ended is sent
   * and listeners stop the media. `reason` is only logged; `error` goes into the state.
   */
  end(status: IngressEndStatus, error?: string, reason?: string): void {
    if (!this.#step({ kind: 'end', status, error })) return;
    this.#ended = true;
    const replaced = this.#owner.release(this);
    if (!replaced) this.#save();
    this.#participant?.close('CLIENT_INITIATED');
    this.#participant = undefined;
    this.#owner.webhook('ingress_ended', this);
    const level = status === IngressState_Status.ENDPOINT_ERROR ? 'warn' : 'info';
    this.log[level]({ status: IngressState_Status[status], error, reason }, 'ingress ended');
    this.safeEmit('end', status, error);
  }

  /** Applies a transition; undefined when the session has ended and ignores it. */
  #step(event: IngressEvent): IngressStep | undefined {
    if (this.#ended) return undefined;
    const step = ingressStep(this.#state, event, nowNs());
    if (step) this.#state = step.state;
    return step;
  }

  #save(): void {
    this.#state.updatedAt = nowNs();
    this.#owner.saveState(this);
  }
}

export class IngressSessions {
  readonly rooms: RoomManager;
  readonly #store: IngressStore;
  readonly #webhooks: WebhookNotifier;
  readonly #log: Logger;
  readonly #live = new Map<string, IngressSession>();
  /** Per-ingress chain of state writes, so they reach Redis in the order they happened. */
  readonly #writes = new KeyedQueue<string>();

  constructor(opts: { store: IngressStore; rooms: RoomManager; webhooks: WebhookNotifier; log: Logger }) {
    this.rooms = opts.rooms;
    this.#store = opts.store;
    this.#webhooks = opts.webhooks;
    this.#log = opts.log;
  }

  /**
   * Sessions do not outlive the process: an ingress stored as BUFFERING/PUBLISHING by a previous
   * run is INACTIVE now (the publisher has to reconnect, which OBS does by itself).
   */
  async resetStale(): Promise<void> {
    for (const info of this.#store.list()) {
      const stale = staleState(info.state, nowNs());
      if (stale) {
        info.state = stale;
        await this.#store.put(info);
      }
    }
  }

  live(ingressId: string): IngressSession | undefined {
    return this.#live.get(ingressId);
  }

  get count(): number {
    return this.#live.size;
  }

  /** A publisher connected: BUFFERING. A live session of the same ingress is replaced. */
  start(info: IngressInfo, protocol: IngressProtocol): IngressSession {
    const previous = this.#live.get(info.ingressId);
    const session = new IngressSession(this, info.clone(), protocol, this.#log);
    this.#live.set(info.ingressId, session);
    previous?.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, 'replaced by a new publisher');
    this.saveState(session);
    session.log.info({ protocol, room: info.roomName, identity: info.participantIdentity }, 'ingress buffering');
    return session;
  }

  /** Ends the live session of an ingress (DeleteIngress, shutdown). */
  stop(ingressId: string, status: IngressEndStatus = IngressState_Status.ENDPOINT_INACTIVE, reason = 'stopped'): void {
    this.#live.get(ingressId)?.end(status, undefined, reason);
  }

  close(): void {
    for (const session of [...this.#live.values()]) session.end(IngressState_Status.ENDPOINT_INACTIVE, undefined, 'shutdown');
  }

  /** Writes complete before the process stops (tests and shutdown read the final state). */
  async flush(): Promise<void> {
    await this.#writes.idle();
  }

  /** @internal Removes an ending session; false when a newer session had already replaced it. */
  release(session: IngressSession): boolean {
    if (this.#live.get(session.ingressId) !== session) return true;
    this.#live.delete(session.ingressId);
    return false;
  }

  /** @internal Writes the session's state into the stored definition (if it still exists). */
  saveState(session: IngressSession): void {
    const id = session.ingressId;
    const write = async () => {
      const current = this.#store.get(id);
      if (!current) return; // deleted meanwhile
      const state = session.state;
      if (!mayOverwrite(current.state, state)) return;
      current.state = state;
      await this.#store.put(current);
    };
    this.#writes.run(id, write).catch((err: unknown) =>
      session.log.error({ err: (err as Error).message }, 'could not store ingress state'),
    );
  }

  /** @internal */
  webhook(event: 'ingress_started' | 'ingress_ended', session: IngressSession): void {
    const current = this.#store.get(session.ingressId) ?? session.info.clone();
    current.state = session.state;
    current.streamKey = ''; // webhooks go to other systems; the key is a publishing credential
    this.#webhooks.notify(event, { ingressInfo: current }, session.ingressId);
  }
}

export type { IngressInfo };
