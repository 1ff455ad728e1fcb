// Auto-record with the real RoomServiceClient and EgressClient: a room created with `egress.room`
// (CreateRoom, or a join token's roomConfig) records itself from creation to its end without any
// StartEgress call, through the same queue, records and webhooks as a requested egress. A bad
// config refuses the creation precisely; a room made again does not record twice.
import fs from 'node:fs';
import {
  AccessToken,
  AutoParticipantEgress,
  AutoTrackEgress,
  EgressClient,
  EgressStatus,
  EncodedFileOutput,
  EncodedFileType,
  RoomCompositeEgressRequest,
  RoomConfiguration,
  RoomEgress,
  RoomServiceClient,
  S3Upload,
  TwirpError,
  WebhookReceiver,
  type EgressInfo,
} from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeParticipant } from '../../src/client/node.ts';
import type { EgressWorker } from '../../src/egress/worker/EgressWorker.ts';
import type { Gateway } from '../../src/main.ts';
import { sleep } from '../../src/time.ts';
import { colourAt, frameAt, publishColour } from '../helpers/composite.ts';
import { inProcessWorker } from '../helpers/egress.ts';
import { rejection } from '../helpers/errors.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { probe } from '../helpers/rtpRecorder.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let hooks: WebhookSink;
let gw: Gateway;
let worker: EgressWorker;
let rooms: RoomServiceClient;
let egress: EgressClient;
const W = 1280;
const H = 720;

beforeAll(async () => {
  redis = await startRedis();
  hooks = await startWebhookSink();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_WEBHOOK_URLS: hooks.url });
  worker = await inProcessWorker(gw, { ROOMGATE_WEBHOOK_URLS: hooks.url });
  rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
  egress = new EgressClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  await worker?.close();
  await gw?.close();
  await hooks?.close();
  await redis?.stop();
});

const mp4 = (filepath: string) => new EncodedFileOutput({ fileType: EncodedFileType.MP4, filepath });
const record = (req: Partial<RoomCompositeEgressRequest> = {}) =>
  new RoomEgress({ room: new RoomCompositeEgressRequest({ layout: 'grid', fileOutputs: [mp4('auto/{room_name}')], ...req }) });

const ofRoom = (room: string): Promise<EgressInfo[]> => egress.listEgress({ roomName: room });
const roomNames = async (): Promise<string[]> => (await rooms.listRooms()).map((r) => r.name);

async function ended(egressId: string, ms = 30_000): Promise<EgressInfo> {
  return waitFor(async () => {
    const [i] = await egress.listEgress({ egressId });
    return i && i.status >= EgressStatus.EGRESS_COMPLETE ? i : undefined;
  }, ms, `${egressId} to end`);
}

async function active(room: string): Promise<EgressInfo> {
  return waitFor(async () => {
    const [i] = await ofRoom(room);
    return i?.status === EgressStatus.EGRESS_ACTIVE ? i : undefined;
  }, 30_000, `the recording of '${room}' to go ACTIVE`);
}

async function roomConfigToken(room: string, identity: string, config: RoomConfiguration): Promise<string> {
  const at = new AccessToken(API_KEY, API_SECRET, { identity });
  at.addGrant({ roomJoin: true, room });
  at.roomConfig = config;
  return at.toJwt();
}

/** The recording decodes: H.264 at the canvas size with AAC, and `colour` fills the single tile. */
async function checkRecording(info: EgressInfo, colour: string): Promise<number> {
  const f = info.fileResults[0]!;
  expect(fs.statSync(f.location).size).toBe(Number(f.size));
  const p = probe(f.location);
  const v = p.streams.find((s) => s.codec_type === 'video')!;
  expect([v.codec_name, v.width, v.height]).toEqual(['h264', W, H]);
  expect(p.streams.some((s) => s.codec_name === 'aac')).toBe(true);
  // The file covers the time it was ACTIVE (startedAt → endedAt); the bound catches a broken clock, not load.
  const wall = Number(f.duration) / 1e9;
  expect(Math.abs(p.duration - wall) / wall).toBeLessThan(0.25);
  expect(colourAt(await frameAt(f.location, p.duration / 2), W, W / 2, H / 2)).toBe(colour);
  return p.duration;
}

describe('auto-record', () => {
  it('refuses a bad egress config precisely and creates no room', async () => {
    const refused = async (name: string, egressConfig: RoomEgress) => {
      const err = await rejection(rooms.createRoom({ name, egress: egressConfig }), TwirpError);
      expect(await roomNames()).not.toContain(name);
      expect(await ofRoom(name)).toEqual([]);
      return { code: err.code, message: err.message, argument: err.metadata?.argument };
    };
    const layout = await refused('bad-layout', record({ layout: 'mosaic' }));
    expect(layout).toMatchObject({ code: 'invalid_argument', argument: 'egress.room.layout' });
    expect(layout.message).toMatch(/^egress\.room: layout 'mosaic' does not exist; use one of .*grid/);
    expect(await refused('no-outputs', record({ fileOutputs: [] }))).toEqual({
      code: 'invalid_argument',
      message: 'egress.room: no outputs: give a file, stream, segments or image output',
      argument: 'egress.room.outputs',
    });
    const bucket = await refused('bad-bucket', record({ fileOutputs: [new EncodedFileOutput({ filepath: 'x', output: { case: 's3', value: new S3Upload({ bucket: 'Bad_Bucket' }) } })] }));
    expect(bucket).toMatchObject({ code: 'invalid_argument', argument: 'egress.room.s3.bucket' });
    expect(bucket.message).toMatch(/^egress\.room: s3\.bucket 'Bad_Bucket' is not a valid bucket name/);
    expect(await refused('auto-participant', new RoomEgress({ participant: new AutoParticipantEgress({ fileOutputs: [mp4('p')] }) }))).toMatchObject({
      code: 'unimplemented',
      argument: 'egress.participant',
    });
    expect(await refused('auto-tracks', new RoomEgress({ room: record().room, tracks: new AutoTrackEgress({ filepath: 't' }) }))).toMatchObject({
      code: 'unimplemented',
      argument: 'egress.tracks',
    });
    // The same refusal when a join token's roomConfig asks for it: the join fails, no room is made.
    const token = await roomConfigToken('bad-token', 'alice', new RoomConfiguration({ egress: record({ layout: 'mosaic' }) }));
    const joinErr = await NodeParticipant.connect(gw.url, token).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(joinErr?.message).toMatch(/egress\.room: layout 'mosaic' does not exist/);
    expect(await roomNames()).not.toContain('bad-token');
  });

  it('records a room from CreateRoom to DeleteRoom without any StartEgress call', async () => {
    // The request's room_name is the room's own, whatever the config says.
    const room = await rooms.createRoom({ name: 'ar', egress: record({ roomName: 'elsewhere' }) });
    const again = await rooms.createRoom({ name: 'ar', egress: record({ roomName: 'elsewhere' }) });
    expect(again.sid).toBe(room.sid);
    const [queued, ...more] = await ofRoom('ar');
    expect(more).toEqual([]); // created twice, recorded once
    expect(queued).toMatchObject({ roomName: 'ar', roomId: room.sid, status: EgressStatus.EGRESS_STARTING });
    expect(queued!.request.case).toBe('roomComposite');
    expect(queued!.request.value).toMatchObject({ roomName: 'ar', layout: 'grid' });
    expect(queued!.fileResults[0]!.filename).toBe('auto/ar.mp4');
    expect(await ofRoom('elsewhere')).toEqual([]);

    // Nobody publishes yet: the recording waits rather than filming an empty canvas.
    await sleep(1500);
    expect((await ofRoom('ar'))[0]!.status).toBe(EgressStatus.EGRESS_STARTING);
    const red = await join(gw.url, 'ar', 'red');
    let deletedAt = 0;
    try {
      await publishColour(red, 'red', 440);
      await active('ar');
      await sleep(4000);
      deletedAt = Date.now();
      await rooms.deleteRoom('ar');
    } finally {
      await red.leave().catch(() => undefined);
    }
    const done = await ended(queued!.egressId);
    expect(done.error).toBe('');
    expect(done.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(done.details).toBe("End reason: room 'ar' was closed");
    console.log(`auto-record: DeleteRoom → COMPLETE (file uploaded) in ${Number(done.endedAt / 1_000_000n) - deletedAt} ms`);
    expect(await checkRecording(done, 'red')).toBeGreaterThan(2);
    expect((await ofRoom('ar')).map((i) => i.egressId)).toEqual([queued!.egressId]);

    // Webhooks as for StartEgress: room_started before egress_started, then ACTIVE, ENDING, COMPLETE.
    await waitFor(() => (hooks.received.some((r) => r.body.includes('egress_ended') && r.body.includes(queued!.egressId)) ? true : undefined), 10_000, 'egress_ended');
    const receiver = new WebhookReceiver(API_KEY, API_SECRET);
    const events = await Promise.all(hooks.received.map((r) => receiver.receive(r.body, r.auth)));
    const mine = events.filter((e) => e.egressInfo?.egressId === queued!.egressId);
    expect(mine.map((e) => [e.event, e.egressInfo!.status])).toEqual([
      ['egress_started', EgressStatus.EGRESS_STARTING],
      ['egress_updated', EgressStatus.EGRESS_ACTIVE],
      ['egress_updated', EgressStatus.EGRESS_ENDING],
      ['egress_ended', EgressStatus.EGRESS_COMPLETE],
    ]);
    const roomStarted = events.findIndex((e) => e.event === 'room_started' && e.room?.name === 'ar');
    expect(roomStarted).toBeGreaterThanOrEqual(0);
    expect(roomStarted).toBeLessThan(events.indexOf(mine[0]!));
  });

  it("records the room a join token's roomConfig creates, until the last participant leaves", async () => {
    const config = new RoomConfiguration({ departureTimeout: 1, egress: record({ layout: 'speaker' }) });
    const blue = await NodeParticipant.connect(gw.url, await roomConfigToken('ar-token', 'blue', config));
    let leftAt = 0;
    try {
      // A second join with the same token configuration finds the room: still one recording.
      const viewer = await NodeParticipant.connect(gw.url, await roomConfigToken('ar-token', 'viewer', config));
      await viewer.leave();
      expect((await rooms.listRooms(['ar-token']))[0]!.departureTimeout).toBe(1);
      await publishColour(blue, 'blue', 440);
      await active('ar-token');
      await sleep(3000);
    } finally {
      leftAt = Date.now();
      await blue.leave();
    }
    const [rec, ...more] = await ofRoom('ar-token');
    expect(more).toEqual([]);
    const done = await ended(rec!.egressId);
    expect(done.error).toBe('');
    expect(done.status).toBe(EgressStatus.EGRESS_COMPLETE);
    expect(done.details).toBe("End reason: room 'ar-token' was closed");
    expect(await roomNames()).not.toContain('ar-token');
    console.log(`auto-record: last leave → COMPLETE (1 s departure timeout, file uploaded) in ${Number(done.endedAt / 1_000_000n) - leftAt} ms`);
    expect(await checkRecording(done, 'blue')).toBeGreaterThan(1.5);
  });

  it('ends the recording of a room deleted before anyone published ABORTED, even when its name is taken again at once', async () => {
    const first = await rooms.createRoom({ name: 'ar-again', egress: record() });
    const [a] = await ofRoom('ar-again');
    // The worker has the job and polls the room.
    await sleep(1500);
    await rooms.deleteRoom('ar-again');
    const second = await rooms.createRoom({ name: 'ar-again', egress: record() });
    expect(second.sid).not.toBe(first.sid);
    // The first recording follows its own room (sid), not whichever room now has the name.
    const gone = await ended(a!.egressId, 15_000);
    expect(gone).toMatchObject({ status: EgressStatus.EGRESS_ABORTED, errorCode: 412, error: 'the source ended before any media was recorded' });
    expect(gone.fileResults[0]!.location).toBe('');
    const recordings = await ofRoom('ar-again');
    expect(recordings).toHaveLength(2);
    const b = recordings.find((i) => i.egressId !== a!.egressId);
    expect(b).toMatchObject({ roomId: second.sid, status: EgressStatus.EGRESS_STARTING });
    await rooms.deleteRoom('ar-again');
    expect((await ended(b!.egressId, 15_000)).status).toBe(EgressStatus.EGRESS_ABORTED);
  });
});
