// The webhook bridge: which room events become which webhooks. It lives with the webhooks, not in
// startGateway, so adding an event means touching the module that owns the event names.
import type { TypedEmitter } from '../emitter.ts';
import type { RoomManagerEvents } from '../sfu/RoomManager.ts';
import type { WebhookNotifier } from './WebhookNotifier.ts';

/** Sends room_*, participant_* and track_* webhooks for the rooms' events. */
export function bridgeRoomWebhooks(rooms: TypedEmitter<RoomManagerEvents>, webhooks: Pick<WebhookNotifier, 'notify'>): void {
  rooms.on('roomstarted', (room) => webhooks.notify('room_started', { room }));
  rooms.on('roomfinished', (room) => webhooks.notify('room_finished', { room }));
  rooms.on('participantjoined', (room, participant) => webhooks.notify('participant_joined', { room, participant }));
  rooms.on('participantleft', (room, participant) => webhooks.notify('participant_left', { room, participant }));
  rooms.on('trackpublished', (room, participant, track) => webhooks.notify('track_published', { room, participant, track }));
  rooms.on('trackunpublished', (room, participant, track) => webhooks.notify('track_unpublished', { room, participant, track }));
}
