// LiveKit's ingress state machine as pure functions of the state and what happened, so the
// transitions are tested without a publisher, a room or Redis (IngressSessions.ts applies them):
//
//   BUFFERING (publisher connected) → PUBLISHING (tracks in the room)
//            → INACTIVE (publisher left) | COMPLETE (URL input finished) | ERROR (with a message)
//
// An ended state takes no further event. `updatedAt` is the writer's: it is stamped when a state is
// stored, not here.
import { IngressState, IngressState_Status, InputAudioState, InputVideoState, type TrackInfo } from '@livekit/protocol';
import type { PartialMessage } from '@bufbuild/protobuf';

export type IngressEndStatus = IngressState_Status.ENDPOINT_INACTIVE | IngressState_Status.ENDPOINT_COMPLETE | IngressState_Status.ENDPOINT_ERROR;

export type IngressEvent =
  /** Media is in the room (first time, or the track list changed). */
  | { kind: 'publishing'; tracks: readonly TrackInfo[] }
  /** Properties of the incoming stream, as measured. */
  | { kind: 'input'; video?: PartialMessage<InputVideoState> | undefined; audio?: PartialMessage<InputAudioState> | undefined }
  /** The session is over. */
  | { kind: 'end'; status: IngressEndStatus; error?: string | undefined };

export interface IngressStep {
  state: IngressState;
  /** The webhook this step sends: a first PUBLISHING starts the ingress, an end ends it. */
  webhook?: 'ingress_started' | 'ingress_ended';
}

/** A publisher connected: a new session's state. */
export function bufferingState(resourceId: string, now: bigint): IngressState {
  return new IngressState({ status: IngressState_Status.ENDPOINT_BUFFERING, resourceId, startedAt: now, updatedAt: now });
}

export function isLive(status: IngressState_Status | undefined): boolean {
  return status === IngressState_Status.ENDPOINT_BUFFERING || status === IngressState_Status.ENDPOINT_PUBLISHING;
}

/** The state after `event` at `now` (ns); undefined when the session has ended and ignores it. */
export function ingressStep(state: IngressState, event: IngressEvent, now: bigint): IngressStep | undefined {
  if (!isLive(state.status)) return undefined;
  const next = state.clone();
  switch (event.kind) {
    case 'publishing': {
      const again = next.status === IngressState_Status.ENDPOINT_PUBLISHING;
      next.status = IngressState_Status.ENDPOINT_PUBLISHING;
      next.tracks = event.tracks.map((t) => t.clone());
      // The tracks changed while publishing (a track that came late): the state, not a second start.
      return again ? { state: next } : { state: next, webhook: 'ingress_started' };
    }
    case 'input':
      if (event.video) next.video = new InputVideoState(event.video);
      if (event.audio) next.audio = new InputAudioState(event.audio);
      return { state: next };
    case 'end':
      next.status = event.status;
      next.error = event.error ?? '';
      next.endedAt = now;
      return { state: next, webhook: 'ingress_ended' };
  }
}

/**
 * A state stored by a previous run of the process: sessions do not outlive it, so a live one is
 * INACTIVE now (the publisher has to reconnect). Undefined when it needs no change.
 */
export function staleState(state: IngressState | undefined, now: bigint): IngressState | undefined {
  if (!state || !isLive(state.status)) return undefined;
  return new IngressState({ ...state, status: IngressState_Status.ENDPOINT_INACTIVE, endedAt: now, updatedAt: now });
}

/** Whether `candidate` may replace the stored state: the newest session wins, an older one never overwrites it. */
export function mayOverwrite(stored: IngressState | undefined, candidate: IngressState): boolean {
  return !(stored?.resourceId && stored.resourceId !== candidate.resourceId && stored.startedAt > candidate.startedAt);
}
