// The pure parts of the cluster (src/cluster/): the codec that carries RoomService values between
// nodes, the least-loaded placement choice, and the cluster settings' validation.
import { ParticipantInfo, ParticipantPermission, Room, RoomEgress, RoomCompositeEgressRequest, TrackInfo, UpdateParticipantRequest } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue } from '../../src/cluster/codec.ts';
import { pickNode, type NodeInfo } from '../../src/cluster/NodeRegistry.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';

const roundTrip = (v: unknown) => decodeValue(JSON.parse(JSON.stringify(encodeValue(v))));

describe('cluster codec', () => {
  it('carries protocol messages as their own classes, bigints and bytes included', () => {
    const room = new Room({ name: 'r', sid: 'RM_x', creationTime: 1700000000n, metadata: 'm', numParticipants: 3 });
    const back = roundTrip([room, [new TrackInfo({ sid: 'TR_1', muted: true })]]) as [Room, TrackInfo[]];
    expect(back[0]).toBeInstanceOf(Room);
    expect(back[0].equals(room)).toBe(true);
    expect(back[1][0]).toBeInstanceOf(TrackInfo);
    expect(back[1][0]!.muted).toBe(true);

    const args = roundTrip(['r', { data: new Uint8Array([0, 1, 255]), topic: undefined, destinationIdentities: ['a'], n: 5n }]) as [string, Record<string, unknown>];
    expect(args[1].data).toEqual(new Uint8Array([0, 1, 255]));
    expect('topic' in args[1]).toBe(false);
    expect(args[1].n).toBe(5n);

    const req = new UpdateParticipantRequest({ room: 'r', identity: 'i', permission: new ParticipantPermission({ canPublish: true }) });
    const upd = roundTrip(req) as UpdateParticipantRequest;
    expect(upd).toBeInstanceOf(UpdateParticipantRequest);
    expect(upd.permission!.canPublish).toBe(true);
    expect(roundTrip(new RoomEgress({ room: new RoomCompositeEgressRequest({ layout: 'grid' }) }))).toBeInstanceOf(RoomEgress);
    expect(roundTrip(new ParticipantInfo({ identity: 'p' }))).toBeInstanceOf(ParticipantInfo);
  });

  it('does not read a user key as a tag, and refuses types it does not know', () => {
    const attrs = { $pb: 'livekit.Room', v: '{}', $b: 'x' };
    expect(roundTrip({ attributes: attrs })).toEqual({ attributes: attrs });
    expect(() => encodeValue(new RoomCompositeEgressRequest())).toThrow(/cannot forward a livekit.RoomCompositeEgressRequest/);
    expect(() => decodeValue({ $pb: 'livekit.Nope', v: {} })).toThrow(/unknown message type/);
    expect(() => encodeValue(() => 1)).toThrow(TypeError);
  });
});

describe('placement', () => {
  const node = (id: string, participants: number, rooms: number, workers = 1): NodeInfo => ({
    id,
    url: `http://${id}`,
    mediaIp: '127.0.0.1',
    startedAt: 0,
    at: 0,
    load: { participants, rooms, workers, consumers: 0 },
  });

  it('picks the least-loaded node, the asking one on a tie, never one without workers', () => {
    expect(pickNode([node('A', 5, 1), node('B', 0, 0), node('C', 2, 1)], 'A')!.id).toBe('B');
    expect(pickNode([node('A', 0, 0), node('B', 0, 0), node('C', 0, 0)], 'C')!.id).toBe('C');
    expect(pickNode([node('B', 0, 0), node('A', 0, 0)], 'Z')!.id).toBe('A');
    expect(pickNode([node('A', 9, 9), node('B', 0, 0, 0)], 'B')!.id).toBe('A');
    expect(pickNode([], 'A')).toBeUndefined();
  });
});

describe('cluster settings', () => {
  const base = { ROOMGATE_CLUSTER_ENABLED: 'true', ROOMGATE_REDIS_URL: 'redis://127.0.0.1:6379', ROOMGATE_NODE_ID: 'n1' };
  const errorOf = (env: Record<string, string>) => {
    try {
      loadConfig({ env });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('expected a ConfigError');
  };

  it('has defaults and reads its env vars', () => {
    const off = loadConfig({ env: {} });
    expect(off.cluster).toEqual({ enabled: false, heartbeat_ms: 1000, node_ttl_ms: 3000, rpc_timeout_ms: 5000 });
    const on = loadConfig({ env: { ...base, ROOMGATE_CLUSTER_HEARTBEAT_MS: '500', ROOMGATE_CLUSTER_ADVERTISE_URL: 'http://10.0.0.5:7880' } });
    expect(on.cluster).toMatchObject({ enabled: true, heartbeat_ms: 500, advertise_url: 'http://10.0.0.5:7880' });
  });

  it('needs a shared Redis, a node id, an address for others and a TTL above two beats', () => {
    expect(errorOf({ ...base, ROOMGATE_REDIS_URL: '' })).toMatch(/ROOMGATE_REDIS_URL|redis/);
    expect(errorOf({ ROOMGATE_CLUSTER_ENABLED: 'true', ROOMGATE_NODE_ID: 'n1' })).toMatch(/ROOMGATE_CLUSTER_ENABLED.*needs.*redis\.url/);
    expect(errorOf({ ROOMGATE_CLUSTER_ENABLED: 'true', ROOMGATE_REDIS_URL: 'redis://r:6379' })).toMatch(/needs .*node_id.*unique per node/);
    const keys = { ROOMGATE_API_KEY: 'k', ROOMGATE_API_SECRET: 'a-secret-long-enough-0123456789abcdef' };
    expect(errorOf({ ...base, ...keys, ROOMGATE_BIND: '0.0.0.0' })).toMatch(/cluster\.advertise_url.*all interfaces/);
    expect(loadConfig({ env: { ...base, ...keys, ROOMGATE_BIND: '0.0.0.0', ROOMGATE_ANNOUNCED_IP: '10.0.0.5' } }).cluster.enabled).toBe(true);
    expect(errorOf({ ...base, ROOMGATE_CLUSTER_HEARTBEAT_MS: '2000' })).toMatch(/ROOMGATE_CLUSTER_NODE_TTL_MS.*at least twice/);
  });
});
