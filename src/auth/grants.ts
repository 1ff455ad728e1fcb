// LiveKit access-token claims (protocol/auth/grants.go). Unknown keys pass through, so tokens from
// newer SDKs that carry grants we don't know yet are still accepted.
import { RoomConfiguration } from '@livekit/protocol';
import { z } from 'zod';

export const videoGrantSchema = z.looseObject({
  roomCreate: z.boolean().optional(),
  roomList: z.boolean().optional(),
  roomRecord: z.boolean().optional(),
  roomAdmin: z.boolean().optional(),
  roomJoin: z.boolean().optional(),
  room: z.string().optional(),
  destinationRoom: z.string().optional(),
  canPublish: z.boolean().optional(),
  canSubscribe: z.boolean().optional(),
  canPublishData: z.boolean().optional(),
  canPublishSources: z.array(z.string()).optional(),
  canUpdateOwnMetadata: z.boolean().optional(),
  ingressAdmin: z.boolean().optional(),
  hidden: z.boolean().optional(),
  recorder: z.boolean().optional(),
  agent: z.boolean().optional(),
  canSubscribeMetrics: z.boolean().optional(),
  canManageAgentSession: z.boolean().optional(),
});

export type VideoGrant = z.infer<typeof videoGrantSchema>;

/** LiveKit's SIPGrant: `admin` manages trunks and dispatch rules, `call` places calls. */
export const sipGrantSchema = z.looseObject({
  admin: z.boolean().optional(),
  call: z.boolean().optional(),
});

export type SipGrant = z.infer<typeof sipGrantSchema>;

export const claimsSchema = z.looseObject({
  iss: z.string(),
  sub: z.string().optional(),
  exp: z.number(),
  nbf: z.number().optional(),
  name: z.string().optional(),
  metadata: z.string().optional(),
  attributes: z.record(z.string(), z.string()).optional(),
  kind: z.string().optional(),
  sha256: z.string().optional(),
  roomPreset: z.string().optional(),
  roomConfig: z.record(z.string(), z.unknown()).optional(),
  video: videoGrantSchema.optional(),
  sip: sipGrantSchema.optional(),
});

/** Verified claims of an access token. `sub` is the participant identity. */
export type Claims = z.infer<typeof claimsSchema>;

/**
 * The token's `roomConfig` (LiveKit's RoomConfiguration: the settings, agents and auto egress of a
 * room the join creates). Undefined when absent; throws when present but not a RoomConfiguration.
 */
export function roomConfiguration(claims: Claims): RoomConfiguration | undefined {
  if (!claims.roomConfig) return undefined;
  return RoomConfiguration.fromJson(claims.roomConfig as never, { ignoreUnknownFields: true });
}
