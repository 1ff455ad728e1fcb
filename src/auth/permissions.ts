// Per-method grant checks, one function per grant as in LiveKit's pkg/service/auth.go.
// A token that verified but lacks the grant gets permission_denied (403); a missing or bad token
// gets unauthenticated (401) from the verifier. LiveKit answers both with unauthenticated; the
// split tells an SDK user which of the two to fix.
import { permissionDenied } from '../errors.ts';
import type { Claims } from './grants.ts';

export function ensureCreatePermission(claims: Claims): void {
  if (!claims.video?.roomCreate) throw permissionDenied('the roomCreate grant is required');
}

export function ensureListPermission(claims: Claims): void {
  if (!claims.video?.roomList) throw permissionDenied('the roomList grant is required');
}

export function ensureRecordPermission(claims: Claims): void {
  if (!claims.video?.roomRecord) throw permissionDenied('the roomRecord grant is required');
}

export function ensureIngressAdminPermission(claims: Claims): void {
  if (!claims.video?.ingressAdmin) throw permissionDenied('the ingressAdmin grant is required');
}

export function ensureSipAdminPermission(claims: Claims): void {
  if (!claims.sip?.admin) throw permissionDenied('the sip.admin grant is required');
}

export function ensureSipCallPermission(claims: Claims): void {
  if (!claims.sip?.call) throw permissionDenied('the sip.call grant is required');
}

/** roomAdmin for exactly this room (the grant's `room` must name it). */
export function ensureAdminPermission(claims: Claims, room: string): void {
  if (!claims.video?.roomAdmin) throw permissionDenied('the roomAdmin grant is required');
  if (claims.video.room !== room) {
    throw permissionDenied(`the roomAdmin grant is for room '${claims.video.room ?? ''}', not '${room}'`);
  }
}
