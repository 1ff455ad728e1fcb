// A join token's claims in the sfu's vocabulary: the grants become a ParticipantPermission, the
// token's roomConfig the settings of a room the join creates. The signaling edges hand verified
// claims to `claimsJoiner(rooms)`; the sfu itself never sees a token.
import { ParticipantInfo_Kind, ParticipantPermission, TrackSource } from '@livekit/protocol';
import { invalidArgument, permissionDenied } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { SOURCE_BY_NAME, sourceNames } from '../sfu/Participant.ts';
import { TRACK_SOURCES, type SignalSink, type TrackSourceName } from '../sfu/ParticipantTypes.ts';
import type { JoinRequest, NewRoomSettings, ResumeRequest } from '../sfu/RoomTypes.ts';
import { roomConfiguration, type Claims, type VideoGrant } from './grants.ts';

/**
 * The grants of a join token as a ParticipantPermission, with LiveKit's defaults: publish and
 * subscribe when absent, data follows canPublish. Source names match case-insensitively; an
 * unknown one stays in the list as UNKNOWN, so the list never widens to "everything".
 */
export function permissionFromClaims(claims: Claims): ParticipantPermission {
  const v = claims.video ?? {};
  const sources = (v.canPublishSources ?? []).map((s) => {
    const name = s.toLowerCase();
    return (TRACK_SOURCES as readonly string[]).includes(name) ? SOURCE_BY_NAME[name as TrackSourceName] : TrackSource.UNKNOWN;
  });
  return new ParticipantPermission({
    canSubscribe: v.canSubscribe ?? true,
    canPublish: v.canPublish ?? true,
    canPublishData: v.canPublishData ?? v.canPublish ?? true,
    canPublishSources: sources,
    hidden: v.hidden ?? false,
    recorder: v.recorder ?? false,
    canUpdateMetadata: v.canUpdateOwnMetadata ?? false,
  });
}

/**
 * The inverse of permissionFromClaims: a participant's current permission as token grants, for the
 * tokens the gateway mints on a participant's behalf (a LiveKit client's refreshed token, an
 * agent's job token).
 */
export function grantFromPermission(p: ParticipantPermission): Pick<VideoGrant, 'canPublish' | 'canSubscribe' | 'canPublishData' | 'canUpdateOwnMetadata' | 'hidden' | 'canPublishSources'> {
  // An UNKNOWN source stays as 'unknown' (which grants nothing): dropping it could empty the list,
  // and an empty list means every source.
  const sources = p.canPublishSources.map((s) => sourceNames([s])[0] ?? 'unknown');
  return {
    canPublish: p.canPublish,
    canSubscribe: p.canSubscribe,
    canPublishData: p.canPublishData,
    canUpdateOwnMetadata: p.canUpdateMetadata,
    hidden: p.hidden,
    ...(sources.length > 0 ? { canPublishSources: sources } : {}),
  };
}

const KINDS: Record<string, ParticipantInfo_Kind> = {
  ingress: ParticipantInfo_Kind.INGRESS,
  egress: ParticipantInfo_Kind.EGRESS,
  sip: ParticipantInfo_Kind.SIP,
  agent: ParticipantInfo_Kind.AGENT,
};

/** The token's `kind` claim ("ingress", "agent", …) as LiveKit's enum; anything else is STANDARD. */
export function participantKind(kind: string | undefined): ParticipantInfo_Kind {
  return (kind && KINDS[kind.toLowerCase()]) || ParticipantInfo_Kind.STANDARD;
}

/**
 * The join a token grants: throws when it grants none (no roomJoin, no room, no identity). An
 * unreadable roomConfig is ignored (as the agent dispatcher ignores it), not fatal to the join.
 */
export function joinRequestFromClaims(claims: Claims, log: Logger): JoinRequest {
  const room = claims.video?.room;
  const identity = claims.sub;
  if (!claims.video?.roomJoin) throw permissionDenied('the roomJoin grant is required to join a room');
  if (!room) throw invalidArgument('the join token names no room');
  if (!identity) throw invalidArgument('the join token has no identity (sub)');
  return {
    room,
    identity,
    name: claims.name ?? '',
    metadata: claims.metadata ?? '',
    attributes: claims.attributes ?? {},
    permission: permissionFromClaims(claims),
    kind: participantKind(claims.kind),
    roomSettings: roomSettingsFromClaims(claims, room, log),
  };
}

function roomSettingsFromClaims(claims: Claims, room: string, log: Logger): NewRoomSettings | undefined {
  let config;
  try {
    config = roomConfiguration(claims);
  } catch (err) {
    log.warn({ room, err: (err as Error).message }, 'ignoring unreadable roomConfig in join token');
    return undefined;
  }
  if (!config) return undefined;
  const { emptyTimeout, departureTimeout, maxParticipants, metadata, egress } = config;
  return { emptyTimeout, departureTimeout, maxParticipants, metadata, egress };
}

/** The session a token may resume: its room and identity, or undefined when it grants no join. */
export function resumeRequestFromClaims(claims: Claims): ResumeRequest | undefined {
  if (!claims.video?.roomJoin || !claims.video.room || !claims.sub) return undefined;
  return { room: claims.video.room, identity: claims.sub };
}

/** What `claimsJoiner` needs of the room layer (RoomManager). */
export interface RequestJoiner<Joined, Resumed> {
  join(req: JoinRequest, sink: SignalSink): Promise<Joined>;
  resume(req: ResumeRequest, sink: SignalSink): Resumed | undefined;
}

/** The room layer as the signaling edges use it: joins and resumes by verified token claims. */
export function claimsJoiner<Joined, Resumed>(
  rooms: RequestJoiner<Joined, Resumed>,
  log: Logger,
): { join(claims: Claims, sink: SignalSink): Promise<Joined>; resume(claims: Claims, sink: SignalSink): Resumed | undefined } {
  return {
    join: (claims, sink) => rooms.join(joinRequestFromClaims(claims, log), sink),
    resume: (claims, sink) => {
      const req = resumeRequestFromClaims(claims);
      return req ? rooms.resume(req, sink) : undefined;
    },
  };
}
