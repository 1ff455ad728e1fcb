// Permissions, limits and RoomService acting on live participants, through the real SDK.
import { RoomServiceClient, TrackSource, TwirpError, WebhookReceiver } from 'livekit-server-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/tokens.ts';
import { NodeParticipant } from '../../src/client/node.ts';
import { runningFfmpegPids } from '../../src/media/ffmpeg.ts';
import { SignalError } from '../../src/client/SignalClient.ts';
import type { Gateway } from '../../src/main.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { rejection } from '../helpers/errors.ts';
import { waitFor } from '../helpers/net.ts';
import { join, joinToken, nextEvent } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let sink: WebhookSink;
let gw: Gateway;
let api: RoomServiceClient;
const people: NodeParticipant[] = [];

beforeAll(async () => {
  redis = await startRedis();
  sink = await startWebhookSink();
  gw = await startTestGateway({
    ROOMGATE_REDIS_URL: redis.url,
    ROOMGATE_WEBHOOK_URLS: sink.url,
    ROOMGATE_ROOM_DEPARTURE_TIMEOUT: '1',
    ROOMGATE_STUN_URLS: 'stun:stun.example.org:3478',
    ROOMGATE_TURN_URLS: 'turn:turn.example.org:3478',
    ROOMGATE_TURN_SECRET: 'turn-shared-secret',
  });
  api = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
});

afterEach(async () => {
  await Promise.all(people.splice(0).map((p) => p.leave()));
  // Every FFmpeg a participant started is gone once it has left.
  await waitFor(() => (runningFfmpegPids().length === 0 ? true : undefined), 5000, 'FFmpeg children to exit');
});

afterAll(async () => {
  await gw?.close();
  await sink?.close();
  await redis?.stop();
});

async function enter(room: string, identity: string, grant = {}) {
  const p = await join(gw.url, room, identity, grant);
  people.push(p);
  return p;
}

const failure = (p: Promise<unknown>) => rejection(p, SignalError);

const tone = ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'];
const bars = ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=15'];

describe('permissions', () => {
  it('enforces canPublish, canPublishSources, canPublishData and hidden', async () => {
    const viewer = await enter('perm-room', 'viewer', { canPublish: false, canPublishData: false });
    const err = await failure(viewer.publishTrack({ kind: 'audio', source: 'microphone' }));
    expect(err.code).toBe('permission_denied');
    expect(err.message).toMatch(/may not publish/);

    const mic = await enter('perm-room', 'mic-only', { canPublishSources: [TrackSource.MICROPHONE] });
    const cam = await failure(mic.publishTrack({ kind: 'video', source: 'camera' }));
    expect(cam).toMatchObject({ code: 'permission_denied', message: "this participant may not publish 'camera' (allowed: microphone)" });
    await expect(mic.publishTrack({ kind: 'audio', source: 'microphone' })).resolves.toMatchObject({ kind: 'audio' });

    const noData = await enter('perm-room', 'no-data', { canPublishData: false, canPublish: true });
    expect((await failure(noData.publishData(new Uint8Array([1])))).code).toBe('permission_denied');
    // As in LiveKit, canPublishData follows canPublish when the token leaves it out.
    const listener = await enter('perm-room', 'listener', { canPublish: false });
    expect((await failure(listener.publishData(new Uint8Array([1])))).code).toBe('permission_denied');
    // Source names match case-insensitively; an unknown one does not widen the list to everything.
    // (The SDK's AccessToken only takes enum values, so this token is minted directly.)
    const oddToken = await mintToken(API_KEY, API_SECRET, {
      identity: 'odd',
      video: { roomJoin: true, room: 'perm-room', canPublishSources: ['Microphone', 'webcam'] },
    });
    const oddSources = await NodeParticipant.connect(gw.url, oddToken);
    people.push(oddSources);
    await expect(oddSources.publishTrack({ kind: 'audio', source: 'microphone' })).resolves.toBeDefined();
    expect((await failure(oddSources.publishTrack({ kind: 'video', source: 'camera' }))).code).toBe('permission_denied');

    // A hidden participant is invisible to the others but listed for admins.
    let sawHidden = false;
    viewer.on('participantConnected', (p) => (sawHidden ||= p.identity === 'ghost'));
    const ghost = await enter('perm-room', 'ghost', { hidden: true });
    expect(ghost.joined.participants.map((p) => p.identity).sort()).toEqual(['listener', 'mic-only', 'no-data', 'odd', 'viewer']);
    const late = await enter('perm-room', 'late');
    expect(late.joined.participants.map((p) => p.identity)).not.toContain('ghost');
    expect(sawHidden).toBe(false);
    expect((await api.listParticipants('perm-room')).map((p) => p.identity)).toContain('ghost');
  });

  it('checks canUpdateOwnMetadata and rejects bogus RTP parameters precisely', async () => {
    const a = await enter('meta-room', 'a');
    expect((await failure(a.updateMetadata({ metadata: 'x' }))).code).toBe('permission_denied');
    const b = await enter('meta-room', 'b', { canUpdateOwnMetadata: true });
    const seen = nextEvent(a, 'participantUpdated', (p) => p.identity === 'b');
    await b.updateMetadata({ metadata: '{"hand":"up"}', name: 'Bee', attributes: { role: 'host' } });
    expect((await seen)[0]).toMatchObject({ metadata: '{"hand":"up"}', name: 'Bee', attributes: { role: 'host' } });

    const t = (await b.signal.request('createTransport', { direction: 'send' })) as { id: string };
    const bogus = await failure(
      b.signal.request('publishTrack', { transportId: t.id, kind: 'video', source: 'camera', rtpParameters: { codecs: 'nope' } }),
    );
    expect(bogus.code).toBe('invalid_argument');
    const wrongKind = await failure(
      b.signal.request('publishTrack', { transportId: t.id, kind: 'audio', source: 'camera', rtpParameters: {} }),
    );
    expect(wrongKind.message).toBe("source 'camera' must be a video track");
    expect((await failure(b.signal.request('connectTransport', { transportId: 'nope', dtlsParameters: {} }))).code).toBe('not_found');
  });
});

describe('room limits and identity', () => {
  it('refuses a join over max_participants', async () => {
    await api.createRoom({ name: 'small-room', maxParticipants: 2 });
    await enter('small-room', 'one');
    await enter('small-room', 'two');
    const full = await failure(NodeParticipant.connect(gw.url, await joinToken('small-room', 'three')));
    expect(full).toMatchObject({ code: 'resource_exhausted', message: "room 'small-room' is full (max_participants 2)" });
    // Hidden recorders do not take a seat.
    await expect(enter('small-room', 'recorder', { hidden: true, recorder: true })).resolves.toBeDefined();
  });

  it('replaces a participant that joins again with the same identity', async () => {
    const first = await enter('dup-room', 'same');
    const kicked = nextEvent(first, 'disconnected');
    const second = await enter('dup-room', 'same');
    expect((await kicked)[0]).toBe('DUPLICATE_IDENTITY');
    expect(second.sid).not.toBe(first.sid);
    expect((await api.listParticipants('dup-room')).map((p) => p.sid)).toEqual([second.sid]);
  });

  it('hands out the configured ICE servers with per-identity TURN credentials', async () => {
    const p = await enter('ice-room', 'ivy');
    const [stun, turn] = p.joined.iceServers;
    expect(stun).toEqual({ urls: ['stun:stun.example.org:3478'] });
    expect(turn).toMatchObject({ urls: ['turn:turn.example.org:3478'] });
    const [expiry, who] = turn!.username!.split(':');
    expect(who).toBe('ivy');
    expect(Number(expiry)).toBeGreaterThan(Date.now() / 1000 + 86_000);
    const t = (await p.signal.request('createTransport', { direction: 'send' })) as { iceServers: unknown[] };
    expect(t.iceServers).toHaveLength(2);
  });

  it('rejects tokens without roomJoin or room, and bad tokens', async () => {
    const at = await joinToken('x', 'y', { roomJoin: false });
    expect((await failure(NodeParticipant.connect(gw.url, at))).code).toBe('permission_denied');
    expect((await failure(NodeParticipant.connect(gw.url, 'garbage'))).code).toBe('unauthenticated');
  });

  it('reconnects by itself after the socket drops, keeping its session and media', async () => {
    const pub = await enter('blip-room', 'pub');
    const sub = await enter('blip-room', 'sub');
    const audio = await pub.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: tone });
    await waitFor(() => (sub.remoteTracks.length === 1 ? true : undefined), 10_000, 'subscription');
    const sid = sub.sid;
    const back = nextEvent(sub, 'reconnected');
    sub.signal.dropForTesting();
    // Published while sub's socket is down: the resumed session catches up on it.
    const video = await pub.publishFromFfmpeg({ kind: 'video', source: 'camera', input: bars });
    await back;
    await waitFor(() => (sub.remoteTracks.some((t) => t.trackSid === video.trackSid) ? true : undefined), 10_000, 'track published during the drop');
    expect(sub.sid).toBe(sid);
    expect(sub.joined.resumed).toBe(true);
    // Still in the room, still receiving, and requests work on the new socket.
    expect((await api.listParticipants('blip-room')).map((p) => p.identity).sort()).toEqual(['pub', 'sub']);
    let packets = 0;
    sub.remoteTracks[0]!.track.onReceiveRtp.subscribe(() => packets++);
    await waitFor(() => (packets > 10 ? true : undefined), 10_000, 'RTP after reconnect');
    await sub.updateMetadata({}).catch((e: SignalError) => expect(e.code).toBe('permission_denied'));
    await audio.stop();
    await video.stop();
  });

  it('resumes a session after the socket drops', async () => {
    const a = await enter('resume-room', 'rita');
    const token = await joinToken('resume-room', 'rita');
    // A second socket with reconnect=1 takes over the same participant (same sid).
    const { SignalClient } = await import('../../src/client/SignalClient.ts');
    const WebSocket = (await import('ws')).default;
    const { client, joined } = await SignalClient.connect(gw.url, token, (u) => new WebSocket(u) as never, { reconnect: true });
    expect(joined.resumed).toBe(true);
    expect(joined.participant.sid).toBe(a.sid);
    client.close();
  });
});

describe('RoomService on live participants', () => {
  it('lists, mutes, updates, unsubscribes and removes', async () => {
    const pub = await enter('live-room', 'pub');
    const sub = await enter('live-room', 'sub');
    const audio = await pub.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: tone });
    const video = await pub.publishFromFfmpeg({ kind: 'video', source: 'camera', input: bars });
    await waitFor(() => (sub.remoteTracks.length === 2 ? true : undefined), 10_000, 'two subscriptions');

    const listed = await api.listParticipants('live-room');
    expect(listed.map((p) => p.identity).sort()).toEqual(['pub', 'sub']);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(Number(/^roomgate_participants (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    expect(Number(/^roomgate_signaling_connections (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    const pubInfo = await api.getParticipant('live-room', 'pub');
    expect(pubInfo.tracks.map((t) => t.sid).sort()).toEqual([audio.trackSid, video.trackSid].sort());

    const muted = nextEvent(sub, 'trackMuted');
    const track = await api.mutePublishedTrack('live-room', 'pub', audio.trackSid, true);
    expect(track?.muted).toBe(true);
    expect((await muted).slice(1)).toEqual([audio.trackSid, true]);

    const updated = nextEvent(sub, 'participantUpdated');
    const info = await api.updateParticipant('live-room', 'pub', { metadata: 'from-admin', name: 'Publisher' });
    expect(info).toMatchObject({ metadata: 'from-admin', name: 'Publisher' });
    expect((await updated)[0]).toMatchObject({ metadata: 'from-admin' });

    const unsub = nextEvent(sub, 'trackUnsubscribed');
    await api.updateSubscriptions('live-room', 'sub', [video.trackSid], false);
    expect((await unsub)[0]).toBe(video.trackSid);
    const resub = nextEvent(sub, 'trackSubscribed', (t) => t.trackSid === video.trackSid);
    await api.updateSubscriptions('live-room', 'sub', [video.trackSid], true);
    await resub;

    // Revoking canPublish live unpublishes the participant's tracks.
    const unpublished = nextEvent(sub, 'trackUnpublished', (_who, sid) => sid === video.trackSid);
    await api.updateParticipant('live-room', 'pub', { permission: { canPublish: false, canSubscribe: true, canPublishData: true } });
    await unpublished;
    expect((await api.getParticipant('live-room', 'pub')).tracks).toEqual([]);

    const removed = nextEvent(pub, 'disconnected');
    await api.removeParticipant('live-room', 'pub');
    expect((await removed)[0]).toBe('PARTICIPANT_REMOVED');
    const gone = await api.getParticipant('live-room', 'pub').then(
      () => undefined,
      (e: unknown) => e as TwirpError,
    );
    expect(gone?.code).toBe('not_found');
    await audio.stop();
    await video.stop();
  });

  it('sends participant and track webhooks in order, and room_finished after departure_timeout', async () => {
    const before = sink.received.length;
    const p = await join(gw.url, 'hook-room', 'hooky');
    const t = await p.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: tone });
    await t.stop();
    await t.unpublish();
    await p.leave();
    const receiver = new WebhookReceiver(API_KEY, API_SECRET);
    const events = await waitFor(
      async () => {
        const all = await Promise.all(sink.received.slice(before).map((r) => receiver.receive(r.body, r.auth)));
        const mine = all.filter((e) => e.room?.name === 'hook-room');
        return mine.some((e) => e.event === 'room_finished') ? mine : undefined;
      },
      10_000,
      'room_finished for hook-room',
    );
    expect(events.map((e) => e.event)).toEqual([
      'room_started',
      'participant_joined',
      'track_published',
      'track_unpublished',
      'participant_left',
      'room_finished',
    ]);
    expect(events[1]!.participant?.identity).toBe('hooky');
    expect(events[2]!.track?.sid).toBe(t.trackSid);
    expect((await api.listRooms(['hook-room'])).length).toBe(0);
  });
});
