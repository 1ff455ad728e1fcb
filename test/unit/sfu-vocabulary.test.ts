// The edges' translations into the sfu's vocabulary: a join token becomes a JoinRequest, the roomgate
// data envelope frames the rooms' data channel, and mediasoup's rejections become SfuErrors.
import { ParticipantInfo_Kind, TrackSource } from '@livekit/protocol';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Claims } from '../../src/auth/grants.ts';
import { grantFromPermission, joinRequestFromClaims, permissionFromClaims, resumeRequestFromClaims } from '../../src/auth/join.ts';
import { ApiError } from '../../src/errors.ts';
import { decodeData, encodeData } from '../../src/signaling/dataEnvelope.ts';
import { roomgateRelayCodec } from '../../src/signaling/relayCodec.ts';
import { fromMediasoup, SfuError } from '../../src/sfu/errors.ts';

const log = pino({ level: 'silent' });
const claims = (extra: Partial<Claims> = {}): Claims => ({ iss: 'k', exp: 2e9, sub: 'alice', video: { roomJoin: true, room: 'r1' }, ...extra });

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('join token → JoinRequest', () => {
  it('carries identity, profile, kind and LiveKit default grants', () => {
    const req = joinRequestFromClaims(claims({ name: 'Alice', metadata: 'm', attributes: { a: '1' }, kind: 'Agent' }), log);
    expect(req).toMatchObject({ room: 'r1', identity: 'alice', name: 'Alice', metadata: 'm', attributes: { a: '1' }, kind: ParticipantInfo_Kind.AGENT });
    expect(req.roomSettings).toBeUndefined();
    expect(req.permission).toMatchObject({ canSubscribe: true, canPublish: true, canPublishData: true, hidden: false, canUpdateMetadata: false });
  });

  it('refuses a token that grants no join, names no room or has no identity', () => {
    const cases: [Claims, string, RegExp][] = [
      [claims({ video: { room: 'r1' } }), 'permission_denied', /roomJoin/],
      [claims({ video: { roomJoin: true } }), 'invalid_argument', /names no room/],
      [claims({ sub: undefined }), 'invalid_argument', /no identity/],
    ];
    for (const [c, code, message] of cases) {
      const err = thrown(() => joinRequestFromClaims(c, log));
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).code).toBe(code);
      expect((err as ApiError).message).toMatch(message);
    }
  });

  it("reads the token's roomConfig into the settings of a room the join creates, and ignores an unreadable one", () => {
    const req = joinRequestFromClaims(claims({ roomConfig: { emptyTimeout: 30, maxParticipants: 4, metadata: 'x' } }), log);
    expect(req.roomSettings).toMatchObject({ emptyTimeout: 30, departureTimeout: 0, maxParticipants: 4, metadata: 'x' });
    expect(joinRequestFromClaims(claims({ roomConfig: { emptyTimeout: 'soon' } }), log).roomSettings).toBeUndefined();
  });

  it('maps source names case-insensitively and keeps an unknown one as UNKNOWN', () => {
    const p = permissionFromClaims(claims({ video: { roomJoin: true, room: 'r1', canPublish: false, canPublishSources: ['Camera', 'hologram'] } }));
    expect(p.canPublishSources).toEqual([TrackSource.CAMERA, TrackSource.UNKNOWN]);
    expect(p.canPublishData).toBe(false); // follows canPublish when absent
  });

  it('turns a permission back into grants, keeping an unknown source so the list never widens', () => {
    const grants = { roomJoin: true, room: 'r1', canPublish: true, canSubscribe: false, canPublishData: true, canUpdateOwnMetadata: true, hidden: false, canPublishSources: ['camera', 'screen_share'] };
    const p = permissionFromClaims(claims({ video: grants }));
    expect(permissionFromClaims(claims({ video: { roomJoin: true, room: 'r1', ...grantFromPermission(p) } }))).toEqual(p);
    expect(grantFromPermission(permissionFromClaims(claims({ video: { roomJoin: true, room: 'r1', canPublishSources: ['hologram'] } }))).canPublishSources).toEqual(['unknown']);
    expect(grantFromPermission(permissionFromClaims(claims())).canPublishSources).toBeUndefined();
  });

  it('resumes only what a join grant names', () => {
    expect(resumeRequestFromClaims(claims())).toEqual({ room: 'r1', identity: 'alice' });
    expect(resumeRequestFromClaims(claims({ video: { room: 'r1' } }))).toBeUndefined();
  });
});

describe('roomgate relay codec', () => {
  it('frames what the room relays in the data envelope, both ways', () => {
    const payload = new Uint8Array([1, 2, 3]);
    const frame = roomgateRelayCodec.encode({ payload, topic: 't', from: 'bob' });
    expect(decodeData(frame)).toEqual({ header: { topic: 't', from: 'bob' }, payload });
    expect(roomgateRelayCodec.decode(encodeData({ destinationIdentities: ['a'] }, payload))).toEqual({ payload, topic: undefined, destinations: ['a'] });
    expect(roomgateRelayCodec.decode(new Uint8Array([0, 9, 1]))).toBeUndefined();
  });
});

describe('sfu errors', () => {
  it("translate mediasoup's rejections once, by kind, and leave the rest alone", () => {
    const unsupported = Object.assign(new Error('no such codec'), { name: 'UnsupportedError' });
    const state = Object.assign(new Error('Transport closed'), { name: 'InvalidStateError' });
    const worker = new Error('missing encodings');
    const other = new Error('channel closed');
    expect(fromMediasoup(unsupported)).toMatchObject({ code: 'invalid_argument', message: 'no such codec' });
    expect(fromMediasoup(state)).toMatchObject({ code: 'failed_precondition' });
    expect(fromMediasoup(worker)).toBeInstanceOf(SfuError);
    expect(fromMediasoup(other)).toBe(other);
    // An SfuError is an ApiError: each transport's one mapping covers it.
    expect(fromMediasoup(unsupported)).toBeInstanceOf(ApiError);
  });
});
