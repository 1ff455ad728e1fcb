// Where a room's media is, for a process that is not a gateway node: an egress worker attached to
// one node records a room hosted by another by pulling its taps from that node. Reads the room
// registry (room → node) and the node's heartbeat record; undefined outside a cluster (no record),
// and the caller then uses its configured gateway.
import type { Redis } from 'ioredis';
import { RoomStore } from '../store/RoomStore.ts';
import { readNode } from './NodeRegistry.ts';

export function roomNodeUrl(redis: Redis): (room: string) => Promise<string | undefined> {
  const store = new RoomStore(redis);
  return async (room) => {
    const stored = await store.get(room);
    return stored ? (await readNode(redis, stored.node))?.url : undefined;
  };
}
