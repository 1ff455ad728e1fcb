// HLS segments and image outputs with the real EgressClient, uploaded to S3 (s3rver):
// a room composite writes an HLS recording and JPEG snapshots from one encode (the playlist and
// every segment in S3, the playlist plays in ffprobe, the snapshots have the asked size); without S3
// everything lands in the output folder (TIMESTAMP segment names, one overwritten snapshot); bad
// fields get precise Twirp errors. A SIGKILLed worker and S3 down at the end: test/faults/segments.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  EgressClient,
  EgressStatus,
  EncodingOptions,
  ImageFileSuffix,
  ImageOutput,
  SegmentedFileOutput,
} from 'livekit-server-sdk';
// The SDK does not re-export this enum; the protocol package is the one it uses.
import { SegmentedFileSuffix } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { parsePlaylist } from '../../src/egress/worker/hlsPlaylist.ts';
import { decodeAll, download, ffprobe, sum } from '../helpers/hls.ts';
import { sleep } from '../../src/time.ts';
import { twirpError } from '../helpers/errors.ts';
import { BUCKET, egressLookups, inProcessWorker } from '../helpers/egress.ts';
import { useEgressStack } from '../helpers/egressStack.ts';
import { API_KEY, API_SECRET } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';

const t = useEgressStack();
const { info, status } = egressLookups(() => t.egress);

describe('HLS segments and image outputs', () => {
  it('room composite → HLS (playlist, live playlist, segments) and JPEG snapshots in S3 from one encode', async () => {
    const worker = await inProcessWorker(t.gw);
    t.workers.push(worker);
    const [red, blue] = [await join(t.gw.url, 'hs', 'red'), await join(t.gw.url, 'hs', 'blue')];
    t.participants.push(red, blue);
    for (const [p, colour, tone] of [[red, 'red', 300], [blue, 'blue', 600]] as const) {
      await p.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'VP8', input: ['-re', '-f', 'lavfi', '-i', `color=c=${colour}:size=320x240:rate=15`] });
      await p.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', `sine=frequency=${tone}:sample_rate=48000,volume=0.3`] });
    }
    const started = await t.egress.startRoomCompositeEgress(
      'hs',
      {
        segments: new SegmentedFileOutput({ filenamePrefix: 'hls/{room_name}/seg', playlistName: 'index.m3u8', livePlaylistName: 'live.m3u8', segmentDuration: 2, output: t.toS3() }),
        images: new ImageOutput({ filenamePrefix: 'snaps/{room_name}/img', captureInterval: 2, width: 320, height: 180, output: t.toS3() }),
      },
      { layout: 'grid', encodingOptions: new EncodingOptions({ width: 640, height: 360, framerate: 15, videoBitrate: 800 }) },
    );
    expect(started.status).toBe(EgressStatus.EGRESS_STARTING);
    expect(started.segmentResults.map((s) => [s.playlistName, s.livePlaylistName])).toEqual([['hls/hs/index.m3u8', 'hls/hs/live.m3u8']]);
    expect(started.imageResults.map((i) => i.filenamePrefix)).toEqual(['snaps/hs/img']);
    expect(JSON.stringify(started.toJson())).not.toContain('S3RVER'); // credentials never echoed
    await status(started.egressId, EgressStatus.EGRESS_ACTIVE, 40_000);
    // While it records, the S3 playlist grows and lists only segments already in S3.
    const live = await waitFor(async () => {
      const objects = await t.s3.list('hls/hs/');
      return objects.some((o) => o.key === 'hls/hs/index.m3u8') ? download(t.s3, 'hls/hs/index.m3u8') : undefined;
    }, 30_000, 'the first playlist in S3');
    expect(live.ended).toBe(false);
    expect(live.text).toContain('#EXT-X-PLAYLIST-TYPE:EVENT');
    await sleep(6000);
    await t.egress.stopEgress(started.egressId);
    const ended = await waitFor(async () => {
      const i = await info(started.egressId);
      return i.status === EgressStatus.EGRESS_COMPLETE || i.status === EgressStatus.EGRESS_FAILED ? i : undefined;
    }, 40_000, 'COMPLETE');
    expect(ended.error).toBe('');
    expect(ended.status).toBe(EgressStatus.EGRESS_COMPLETE);

    const seg = ended.segmentResults[0]!;
    expect(seg.playlistLocation).toBe(`${t.s3.endpoint}/${BUCKET}/hls/hs/index.m3u8`);
    expect(seg.livePlaylistLocation).toBe(`${t.s3.endpoint}/${BUCKET}/hls/hs/live.m3u8`);
    const hls = await download(t.s3, 'hls/hs/index.m3u8');
    expect(hls.ended).toBe(true);
    expect(hls.segments.map((s) => s.uri)).toEqual(hls.segments.map((_, i) => `seg_${String(i).padStart(5, '0')}.ts`));
    expect(Number(seg.segmentCount)).toBe(hls.segments.length);
    expect(hls.segments.length).toBeGreaterThanOrEqual(3);
    const segmentObjects = (await t.s3.list('hls/hs/seg_')).filter((o) => o.key.endsWith('.ts'));
    expect(segmentObjects.map((o) => o.key)).toEqual(hls.segments.map((s) => `hls/hs/${s.uri}`));
    expect(Number(seg.size)).toBe(sum(segmentObjects.map((o) => o.size)));
    const listed = sum(hls.segments.map((s) => s.duration));
    expect(Number(seg.duration) / 1e9).toBeCloseTo(listed, 2);
    expect(seg.startedAt).toBeGreaterThan(0n);
    expect(seg.endedAt).toBeGreaterThan(seg.startedAt);
    // Keyframes every segment duration: every segment but the last is 2 s long.
    for (const s of hls.segments.slice(0, -1)) expect(s.duration).toBeCloseTo(2, 1);
    const decoded = decodeAll(hls.local);
    expect([decoded.width, decoded.height, decoded.audio]).toEqual([640, 360, true]);
    expect(Math.abs(decoded.duration - listed)).toBeLessThan(0.5);
    expect(decoded.video).toBeGreaterThan(listed * 15 * 0.8);

    const livePlaylist = parsePlaylist((await t.s3.get('hls/hs/live.m3u8')).toString('utf8'));
    expect(livePlaylist.ended).toBe(true);
    expect(livePlaylist.segments.map((s) => s.uri)).toEqual(hls.segments.slice(-5).map((s) => s.uri));

    const images = ended.imageResults[0]!;
    const jpegs = await t.s3.list('snaps/hs/img_');
    expect(jpegs.map((o) => o.key)).toEqual(jpegs.map((_, i) => `snaps/hs/img_${String(i).padStart(5, '0')}.jpeg`));
    expect(Number(images.imageCount)).toBe(jpegs.length);
    expect(jpegs.length).toBeGreaterThanOrEqual(3);
    expect(images.endedAt).toBeGreaterThan(images.startedAt);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-jpeg-'));
    for (const o of jpegs) {
      const file = path.join(dir, path.basename(o.key));
      fs.writeFileSync(file, await t.s3.get(o.key));
      const p = ffprobe([file]);
      expect(p.streams.map((s) => [s.codec_name, s.width, s.height])).toEqual([['mjpeg', 320, 180]]);
    }
    expect(ended.result.case).toBeUndefined(); // several outputs: no legacy result
    await worker.close();
  });

  it('without S3: track composite segments (TIMESTAMP names) and one overwritten snapshot in the output folder', async () => {
    const worker = await inProcessWorker(t.gw);
    t.workers.push(worker);
    const bob = await join(t.gw.url, 'hl', 'bob');
    t.participants.push(bob);
    const video = await bob.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'VP8', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15'] });
    const audio = await bob.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=500:sample_rate=48000'] });
    const started = await t.egress.startTrackCompositeEgress(
      'hl',
      {
        segments: new SegmentedFileOutput({ playlistName: 'local/{room_name}', segmentDuration: 2, filenameSuffix: SegmentedFileSuffix.TIMESTAMP }),
        images: new ImageOutput({ filenamePrefix: 'local/latest', captureInterval: 1, filenameSuffix: ImageFileSuffix.IMAGE_SUFFIX_NONE_OVERWRITE }),
      },
      { audioTrackId: audio.trackSid, videoTrackId: video.trackSid, encodingOptions: new EncodingOptions({ width: 320, height: 240, framerate: 15, videoBitrate: 500 }) },
    );
    await status(started.egressId, EgressStatus.EGRESS_ACTIVE, 40_000);
    await sleep(5000);
    await t.egress.stopEgress(started.egressId);
    const ended = await status(started.egressId, EgressStatus.EGRESS_COMPLETE, 40_000);
    const root = path.resolve(t.gw.config.egress.output_dir);
    const seg = ended.segmentResults[0]!;
    expect(seg.playlistName).toBe('local/hl.m3u8');
    expect(seg.playlistLocation).toBe(path.join(root, 'local/hl.m3u8'));
    const playlist = parsePlaylist(fs.readFileSync(seg.playlistLocation, 'utf8'));
    expect(playlist.ended).toBe(true);
    expect(playlist.segments.length).toBe(Number(seg.segmentCount));
    for (const s of playlist.segments) expect(s.uri).toMatch(/^hl_20\d{15}\.ts$/);
    const decoded = decodeAll(seg.playlistLocation);
    expect([decoded.width, decoded.height, decoded.audio]).toEqual([320, 240, true]);
    const images = ended.imageResults[0]!;
    expect(Number(images.imageCount)).toBeGreaterThanOrEqual(3);
    expect(fs.readdirSync(path.join(root, 'local')).filter((f) => f.endsWith('.jpeg'))).toEqual(['latest.jpeg']);
    expect(ffprobe([path.join(root, 'local/latest.jpeg')]).streams.map((s) => [s.codec_name, s.width, s.height])).toEqual([['mjpeg', 320, 240]]);
    // Nothing left in staging.
    expect(fs.readdirSync(path.join(root, '.staging')).filter((d) => d.startsWith(started.egressId))).toEqual([]);
    await worker.close();
  });

  it('refuses bad segment and image fields with the field named', async () => {
    await t.gw.rooms.createRoom({ name: 'hbad' });
    const composite = (o: Parameters<EgressClient['startRoomCompositeEgress']>[1], opts = {}) => twirpError(t.egress.startRoomCompositeEgress('hbad', o, { layout: 'grid', ...opts }));
    expect(await composite({ segments: new SegmentedFileOutput({ segmentDuration: 90 }) })).toEqual({ code: 'invalid_argument', message: 'segments.segment_duration must be between 1 and 60 seconds (got 90)' });
    expect(await composite({ segments: new SegmentedFileOutput({ playlistName: 'a/p', livePlaylistName: 'b/l' }) })).toEqual({ code: 'invalid_argument', message: "segments.live_playlist_name 'b/l' must be in the playlist's folder ('a')" });
    expect(await composite({ segments: new SegmentedFileOutput({ filenamePrefix: '../../etc/seg' }) })).toEqual({ code: 'invalid_argument', message: "segments.filename_prefix '../../etc/seg' must not contain '..'" });
    expect(await composite({ images: new ImageOutput({ width: 641, height: 360 }) })).toEqual({ code: 'invalid_argument', message: 'image_outputs[0].width must be even (got 641): snapshots are 4:2:0 pictures' });
    expect(await composite({ images: new ImageOutput({ height: 9000 }) })).toEqual({ code: 'invalid_argument', message: "image_outputs[0].height must be 0 (the video's) or between 16 and 3840 (got 9000)" });
    expect(await composite({ images: new ImageOutput({}) }, { audioOnly: true })).toEqual({ code: 'invalid_argument', message: 'image outputs need video, and this egress has none' });
    const gcp = await composite({ segments: new SegmentedFileOutput({ output: { case: 'gcp', value: {} as never } }) });
    expect(gcp.code).toBe('unimplemented');
    // Fields the SDK cannot even send: a negative duration does not decode (uint32), an unknown codec.
    const raw = async (body: unknown) => {
      const { AccessToken } = await import('livekit-server-sdk');
      const at = new AccessToken(API_KEY, API_SECRET);
      at.addGrant({ roomRecord: true });
      const res = await fetch(`${t.gw.url}/twirp/livekit.Egress/StartRoomCompositeEgress`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${await at.toJwt()}` },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { code: string; msg: string } };
    };
    const negative = await raw({ roomName: 'hbad', segmentOutputs: [{ segmentDuration: -4 }] });
    expect([negative.status, negative.body.code]).toEqual([400, 'malformed']);
    expect(negative.body.msg).toMatch(/segment_duration/);
    const codec = await raw({ roomName: 'hbad', imageOutputs: [{ imageCodec: 7 }] });
    expect(codec.body).toMatchObject({ code: 'unimplemented', msg: 'image_outputs[0].image_codec 7 is not supported; use IC_JPEG' });
    const two = await raw({ roomName: 'hbad', segmentOutputs: [{}, {}] });
    expect(two.body).toMatchObject({ code: 'invalid_argument', msg: 'at most one segments output is allowed (got 2)' });
  });
});
