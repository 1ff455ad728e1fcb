// RoomService on any node: the one place where a call meets the cluster. It wraps this node's room
// backend (the RoomManager) in the same RoomBackend interface the Twirp service takes: a call about
// a room hosted here runs locally; one about a room on another node is forwarded to that node over
// NodeRpc and answered as if local; a new room is placed on the least-loaded live node. The
// placement itself is the RoomStore's HSETNX (room name → node), done by the chosen node, so two
// nodes creating one name at once agree on a single owner.
import type { Room as RoomInfo } from '@livekit/protocol';
import type { RoomBackend } from '../api/twirp/room.ts';
import { ApiError, unavailable } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { RoomStore } from '../store/RoomStore.ts';
import { pickNode, type NodeInfo, type NodeRegistry } from './NodeRegistry.ts';
import type { NodeRpc } from './NodeRpc.ts';

type RoomMethod = keyof RoomBackend;
type AnyCall = (...args: unknown[]) => Promise<unknown>;

/** Every RoomBackend method: the names another node may ask this node to run. */
const ROOM_METHODS: readonly RoomMethod[] = [
  'createRoom',
  'listRooms',
  'deleteRoom',
  'updateRoomMetadata',
  'listParticipants',
  'getParticipant',
  'removeParticipant',
  'mutePublishedTrack',
  'updateParticipant',
  'updateSubscriptions',
  'sendData',
];

export const RPC_ROOM_PREFIX = 'room.';

export class ClusterRooms implements RoomBackend {
  readonly #local: RoomBackend;
  readonly #store: RoomStore;
  readonly #registry: NodeRegistry;
  readonly #rpc: NodeRpc;
  readonly #log: Logger;

  constructor(opts: { local: RoomBackend; store: RoomStore; registry: NodeRegistry; rpc: NodeRpc; log: Logger }) {
    this.#local = opts.local;
    this.#store = opts.store;
    this.#registry = opts.registry;
    this.#rpc = opts.rpc;
    this.#log = opts.log;
  }

  get #self(): string {
    return this.#registry.selfId;
  }

  /** Runs a call another node forwarded here (NodeRpc's handler). */
  async serve(method: string, args: unknown[]): Promise<unknown> {
    const name = method.startsWith(RPC_ROOM_PREFIX) ? method.slice(RPC_ROOM_PREFIX.length) : '';
    if (!(ROOM_METHODS as readonly string[]).includes(name)) throw new ApiError('bad_route', `no such forwarded call: ${method}`);
    return (this.#local[name as RoomMethod] as AnyCall).apply(this.#local, args);
  }

  /** Runs `method` on `node`: here directly, elsewhere over the node channel. */
  async #on<K extends RoomMethod>(node: string, method: K, args: Parameters<RoomBackend[K]>): Promise<Awaited<ReturnType<RoomBackend[K]>>> {
    if (node === this.#self) return (this.#local[method] as AnyCall).apply(this.#local, args) as Promise<Awaited<ReturnType<RoomBackend[K]>>>;
    if (!(await this.#registry.get(node))) {
      throw unavailable(`node ${node}, which hosts this room, is not running; its rooms are finished within seconds, then the room can be created again`);
    }
    return (await this.#rpc.call(node, `${RPC_ROOM_PREFIX}${method}`, args)) as Awaited<ReturnType<RoomBackend[K]>>;
  }

  /** A call about one room, run by the node that hosts it (here when the room does not exist, so the answer is not_found). */
  async #byRoom<K extends RoomMethod>(room: string, method: K, args: Parameters<RoomBackend[K]>): Promise<Awaited<ReturnType<RoomBackend[K]>>> {
    const node = (await this.#store.get(room))?.node ?? this.#self;
    return this.#on(node, method, args);
  }

  /**
   * The node that hosts `room`, or the one a new room of that name goes to. Undefined when the
   * room's node is not running (the caller answers locally, which refuses with `unavailable`).
   */
  async locate(room: string): Promise<NodeInfo | undefined> {
    const stored = await this.#store.get(room);
    if (stored) return this.#registry.get(stored.node);
    return this.#place();
  }

  async #place(): Promise<NodeInfo | undefined> {
    const chosen = pickNode(await this.#registry.live(), this.#self);
    if (!chosen) this.#log.warn('no live node with a media worker; placing the room here');
    return chosen;
  }

  async createRoom(opts: Parameters<RoomBackend['createRoom']>[0]): Promise<RoomInfo> {
    const stored = await this.#store.get(opts.name);
    const node = stored?.node ?? (await this.#place())?.id ?? this.#self;
    return this.#on(node, 'createRoom', [opts]);
  }

  /** Every node's rooms: names from the shared store, live figures from each room's node. */
  async listRooms(names: string[]): Promise<RoomInfo[]> {
    const stored = await this.#store.list(names);
    const byNode = new Map<string, string[]>();
    for (const { room, node } of stored) byNode.set(node, [...(byNode.get(node) ?? []), room.name]);
    const live = new Map<string, RoomInfo>();
    await Promise.all(
      [...byNode].map(async ([node, roomNames]) => {
        try {
          for (const room of await this.#on(node, 'listRooms', [roomNames])) live.set(room.name, room);
        } catch (err) {
          // A node that is gone or slow: its rooms are listed as stored, until they are finished.
          this.#log.warn({ node, err: (err as Error).message }, 'listing rooms without the live figures of a node');
        }
      }),
    );
    return stored.map(({ room }) => live.get(room.name) ?? room);
  }

  deleteRoom(name: string): Promise<void> {
    return this.#byRoom(name, 'deleteRoom', [name]);
  }

  updateRoomMetadata(...args: Parameters<RoomBackend['updateRoomMetadata']>): Promise<RoomInfo> {
    return this.#byRoom(args[0], 'updateRoomMetadata', args);
  }

  listParticipants(...args: Parameters<RoomBackend['listParticipants']>) {
    return this.#byRoom(args[0], 'listParticipants', args);
  }

  getParticipant(...args: Parameters<RoomBackend['getParticipant']>) {
    return this.#byRoom(args[0], 'getParticipant', args);
  }

  removeParticipant(...args: Parameters<RoomBackend['removeParticipant']>) {
    return this.#byRoom(args[0], 'removeParticipant', args);
  }

  mutePublishedTrack(...args: Parameters<RoomBackend['mutePublishedTrack']>) {
    return this.#byRoom(args[0], 'mutePublishedTrack', args);
  }

  updateParticipant(...args: Parameters<RoomBackend['updateParticipant']>) {
    return this.#byRoom(args[0], 'updateParticipant', args);
  }

  updateSubscriptions(...args: Parameters<RoomBackend['updateSubscriptions']>) {
    return this.#byRoom(args[0], 'updateSubscriptions', args);
  }

  sendData(...args: Parameters<RoomBackend['sendData']>) {
    return this.#byRoom(args[0], 'sendData', args);
  }
}
