// Gateway side of the room composite: "who is in the room, what do they publish, does its RTP
// flow, who speaks" as a worker's layout needs it. A producer that is paused or has sent nothing
// for FLOW_GRACE_MS counts as not flowing: a compositor input without packets would stall the
// whole FFmpeg filter graph, so the layout leaves it out (name card) until media returns.
import { ParticipantInfo_Kind, TrackSource } from '@livekit/protocol';
import type { RoomImpl } from '../../sfu/Room.ts';
import type { RoomManager } from '../../sfu/RoomManager.ts';
import type { RoomSnapshot, SnapshotParticipant, TrackSourceName } from './types.ts';

const FLOW_GRACE_MS = 1500;

const SOURCE_NAMES: Record<number, TrackSourceName> = {
  [TrackSource.CAMERA]: 'camera',
  [TrackSource.MICROPHONE]: 'microphone',
  [TrackSource.SCREEN_SHARE]: 'screen_share',
  [TrackSource.SCREEN_SHARE_AUDIO]: 'screen_share_audio',
};

interface Flow {
  bytes: number;
  changedAt: number;
}

export class RoomSnapshots {
  readonly #rooms: RoomManager;
  /** room name → producer id → last byte count seen and when it last moved. */
  readonly #flows = new Map<string, Map<string, Flow>>();
  /** room name → identity → first seen (ms): stable tile order. */
  readonly #firstSeen = new Map<string, Map<string, number>>();

  constructor(rooms: RoomManager) {
    this.#rooms = rooms;
  }

  /**
   * `roomId`, when given, is the room instance being recorded: a room deleted and created again
   * under the same name (within one poll) is another room, and its recording is not this one's.
   */
  async snapshot(roomName: string, roomId?: string): Promise<RoomSnapshot> {
    const room = this.#rooms.liveRoom(roomName);
    if (!room || room.closed || (roomId && room.sid !== roomId)) {
      this.#firstSeen.delete(roomName);
      this.#flows.delete(roomName);
      const exists = await this.#rooms.getRoom(roomName).then((r) => !roomId || r.sid === roomId, () => false);
      return { state: exists ? 'idle' : 'gone', participants: [], speakers: [] };
    }
    return this.#live(room);
  }

  async #live(room: RoomImpl): Promise<RoomSnapshot> {
    const now = Date.now();
    const seen = this.#firstSeen.get(room.name) ?? new Map<string, number>();
    this.#firstSeen.set(room.name, seen);
    const flows = this.#flows.get(room.name) ?? new Map<string, Flow>();
    const producers = new Set<string>();
    const participants: SnapshotParticipant[] = [];
    const present = new Set<string>();
    for (const info of room.participants()) {
      let p;
      try {
        p = room.participant(info.identity);
      } catch {
        continue;
      }
      // Recorders, hidden observers and egress participants are not part of the picture.
      if (p.hidden || p.recorder || p.kind === ParticipantInfo_Kind.EGRESS) continue;
      present.add(p.identity);
      if (!seen.has(p.identity)) seen.set(p.identity, now + seen.size / 1000);
      const tracks = await Promise.all(
        p.tracks
          .filter((t) => !t.producer.closed)
          .map(async (t) => {
            producers.add(t.producer.id);
            const flowing = !t.producer.paused && !t.info.muted && (await this.#flowing(flows, t.producer.id, () => t.producer.getStats(), now));
            return {
              sid: t.info.sid,
              kind: t.producer.kind,
              source: SOURCE_NAMES[t.info.source] ?? ('unknown' as const),
              muted: t.info.muted || t.producer.paused,
              flowing,
            };
          }),
      );
      participants.push({ identity: p.identity, name: info.name || p.identity, joinedAt: seen.get(p.identity)!, tracks });
    }
    for (const id of [...seen.keys()]) if (!present.has(id)) seen.delete(id);
    for (const id of [...flows.keys()]) if (!producers.has(id)) flows.delete(id);
    this.#flows.set(room.name, flows);
    participants.sort((a, b) => a.joinedAt - b.joinedAt);
    const speakers = room.activeSpeakers.map((s) => s.identity).filter((id) => present.has(id));
    return { state: 'live', participants, speakers };
  }

  async #flowing(flows: Map<string, Flow>, producerId: string, stats: () => Promise<{ byteCount: number }[]>, now: number): Promise<boolean> {
    let bytes = 0;
    try {
      bytes = (await stats()).reduce((n, s) => n + s.byteCount, 0);
    } catch {
      return false; // closed meanwhile
    }
    const prev = flows.get(producerId);
    if (!prev) {
      // First look: a fresh producer gets the benefit of the doubt.
      flows.set(producerId, { bytes, changedAt: now });
      return true;
    }
    if (bytes !== prev.bytes) {
      prev.bytes = bytes;
      prev.changedAt = now;
    }
    return now - prev.changedAt < FLOW_GRACE_MS;
  }
}
