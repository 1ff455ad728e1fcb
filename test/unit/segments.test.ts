// HLS and image outputs, the parts without media: LiveKit's naming rules for playlists, segments and
// images, the field checks, the keyframe interval an HLS encode gets, playlists read and written,
// the stored-files ledger, and the ordered upload queue (against a real folder it cannot write to,
// then can).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImageCodec, ImageFileSuffix, ImageOutput, S3Upload, SegmentedFileOutput, SegmentedFileSuffix } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../src/errors.ts';
import type { EncodingSpec } from '../../src/egress/contract.ts';
import { encodingForSegments, imagesFrom, segmentLayout, segmentsFrom } from '../../src/egress/segmentsRequest.ts';
import { imageName, parsePlaylist, parseProgramDateTime, renderPlaylist, segmentName } from '../../src/egress/worker/hlsPlaylist.ts';
import { moduleLogger } from '../../src/logger.ts';
import { Ledger } from '../../src/storage/Ledger.ts';
import { UploadQueue } from '../../src/storage/UploadQueue.ts';
import { folderTarget } from '../../src/storage/UploadTarget.ts';

const v = { roomName: 'standup', roomId: 'RM_1' };
const noS3 = { force_path_style: false };

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('segment layout (LiveKit naming)', () => {
  it('defaults: playlist from the prefix, prefix from the playlist, else {room_name}-{time}', () => {
    expect(segmentLayout({ prefix: 'hls/seg', playlist: '', live: '' }, 'fb')).toEqual({ dir: 'hls', playlistName: 'seg.m3u8', segmentPrefix: 'seg' });
    expect(segmentLayout({ prefix: '', playlist: 'out/index.m3u8', live: 'live' }, 'fb')).toEqual({ dir: 'out', playlistName: 'index.m3u8', livePlaylistName: 'live.m3u8', segmentPrefix: 'index' });
    expect(segmentLayout({ prefix: '', playlist: '', live: '' }, 'fb')).toEqual({ dir: '', playlistName: 'fb.m3u8', segmentPrefix: 'fb' });
    // A folder only: its files get the fallback name.
    expect(segmentLayout({ prefix: 'rec/', playlist: '', live: '' }, 'fb')).toEqual({ dir: 'rec', playlistName: 'fb.m3u8', segmentPrefix: 'fb' });
  });

  it('a segment prefix in another folder is a sub-folder of the playlist folder', () => {
    expect(segmentLayout({ prefix: 'chunks/s', playlist: 'out/p', live: '' }, 'fb')).toEqual({ dir: 'out', playlistName: 'p.m3u8', segmentPrefix: 'chunks/s' });
    expect(segmentLayout({ prefix: 'out/s', playlist: 'out/p', live: '' }, 'fb')).toEqual({ dir: 'out', playlistName: 'p.m3u8', segmentPrefix: 's' });
  });

  it('refuses a live playlist elsewhere or named like the playlist, and `..`', () => {
    expect(refusal(() => segmentLayout({ prefix: '', playlist: 'a/p', live: 'b/l', }, 'fb'))).toEqual({ code: 'invalid_argument', message: "segments.live_playlist_name 'b/l' must be in the playlist's folder ('a')" });
    expect(refusal(() => segmentLayout({ prefix: '', playlist: 'p.m3u8', live: 'p' }, 'fb')).message).toBe("segments.live_playlist_name must differ from playlist_name (both 'p.m3u8')");
    expect(refusal(() => segmentLayout({ prefix: '../x', playlist: '', live: '' }, 'fb'))).toEqual({ code: 'invalid_argument', message: "segments.filename_prefix '../x' must not contain '..'" });
  });
});

describe('segments and image fields', () => {
  it('segments: defaults (4 s, INDEX), templates rendered, S3 taken, bad values refused by name', () => {
    const s3 = new S3Upload({ bucket: 'recordings', accessKey: 'k', secret: 's' });
    const spec = segmentsFrom(new SegmentedFileOutput({ filenamePrefix: '{room_name}/seg', output: { case: 's3', value: s3 } }), v, noS3);
    expect(spec).toMatchObject({ dir: 'standup', playlistName: 'seg.m3u8', segmentPrefix: 'seg', suffix: 'index', segmentDuration: 4, s3: { bucket: 'recordings', accessKey: 'k' } });
    expect(segmentsFrom(new SegmentedFileOutput({ segmentDuration: 6, filenameSuffix: SegmentedFileSuffix.TIMESTAMP }), v, noS3)).toMatchObject({ suffix: 'timestamp', segmentDuration: 6 });
    expect(refusal(() => segmentsFrom(new SegmentedFileOutput({ segmentDuration: 61 }), v, noS3))).toEqual({ code: 'invalid_argument', message: 'segments.segment_duration must be between 1 and 60 seconds (got 61)' });
    expect(refusal(() => segmentsFrom(new SegmentedFileOutput({ filenameSuffix: 7 as SegmentedFileSuffix }), v, noS3)).message).toBe('segments.filename_suffix 7 is not INDEX or TIMESTAMP');
    expect(refusal(() => segmentsFrom(new SegmentedFileOutput({ output: { case: 's3', value: new S3Upload({ bucket: 'Bad_Bucket' }) } }), v, noS3)).message).toMatch(/^s3.bucket 'Bad_Bucket' is not a valid bucket name/);
  });

  it('images: defaults (10 s, picture size, {room_name}-{time}), suffixes, and precise refusals', () => {
    const [a, b] = imagesFrom([new ImageOutput({ filenamePrefix: 'snaps/a', width: 320, height: 180 }), new ImageOutput({ filenameSuffix: ImageFileSuffix.IMAGE_SUFFIX_NONE_OVERWRITE, captureInterval: 2 })], v, noS3);
    expect(a).toEqual({ prefix: 'snaps/a', suffix: 'index', captureInterval: 10, width: 320, height: 180 });
    expect(b).toMatchObject({ suffix: 'none', captureInterval: 2, width: 0, height: 0 });
    expect(b!.prefix).toMatch(/^standup-\d{4}-\d{2}-\d{2}T\d{6}$/);
    const one = (o: Partial<ImageOutput>) => refusal(() => imagesFrom([new ImageOutput({ filenamePrefix: 'x', ...o })], v, noS3));
    expect(one({ width: 321 })).toEqual({ code: 'invalid_argument', message: 'image_outputs[0].width must be even (got 321): snapshots are 4:2:0 pictures' });
    expect(one({ height: -2 }).message).toBe("image_outputs[0].height must be 0 (the video's) or between 16 and 3840 (got -2)");
    expect(one({ width: 8000 }).message).toBe("image_outputs[0].width must be 0 (the video's) or between 16 and 3840 (got 8000)");
    expect(one({ captureInterval: 7200 }).message).toBe('image_outputs[0].capture_interval must be between 1 and 3600 seconds (got 7200)');
    expect(one({ filenamePrefix: 'a/../../b' }).message).toBe("image_outputs[0].filename_prefix 'a/../../b' must not contain '..'");
    expect(one({ imageCodec: 2 as ImageCodec })).toEqual({ code: 'unimplemented', message: 'image_outputs[0].image_codec 2 is not supported; use IC_JPEG' });
    const twice = refusal(() => imagesFrom([new ImageOutput({ filenamePrefix: 'same' }), new ImageOutput({ filenamePrefix: 'same' })], v, noS3));
    expect(twice.message).toBe("image_outputs[1].filename_prefix 'same' is already used by image_outputs[0]; their images would overwrite each other");
  });

  it('an HLS encode puts a keyframe at every segment boundary unless the request chose the interval', () => {
    const e: EncodingSpec = { passthroughAllowed: true, width: 1280, height: 720, framerate: 30, videoBitrate: 3000, audioBitrate: 128, audioFrequency: 44100, keyFrameInterval: 4, profile: 'high' };
    const seg = (d: number) => ({ dir: '', playlistName: 'p.m3u8', segmentPrefix: 'p', suffix: 'index' as const, segmentDuration: d });
    expect(encodingForSegments(e, seg(4), false)).toMatchObject({ passthroughAllowed: false, keyFrameInterval: 4 });
    expect(encodingForSegments(e, seg(6), false).keyFrameInterval).toBe(3);
    expect(encodingForSegments(e, seg(2), false).keyFrameInterval).toBe(2);
    expect(encodingForSegments(e, seg(5), false).keyFrameInterval).toBe(1);
    expect(encodingForSegments({ ...e, keyFrameInterval: 2 }, seg(10), false).keyFrameInterval).toBe(2);
    expect(encodingForSegments({ ...e, keyFrameInterval: 7 }, seg(4), true).keyFrameInterval).toBe(7);
  });
});

describe('playlists and names', () => {
  const ffmpeg = [
    '#EXTM3U', '#EXT-X-VERSION:6', '#EXT-X-TARGETDURATION:4', '#EXT-X-MEDIA-SEQUENCE:0', '#EXT-X-PLAYLIST-TYPE:EVENT',
    '#EXTINF:4.000000,', '#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.250+0000', 'seg_00000.ts',
    '#EXTINF:4.200000,', '#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04.250+0000', 'seg_00001.ts',
  ].join('\n');

  it('reads FFmpeg playlists (tags in any order, date-time offsets), with or without ENDLIST', () => {
    const p = parsePlaylist(ffmpeg);
    expect(p).toEqual({
      ended: false,
      segments: [
        { uri: 'seg_00000.ts', duration: 4, programDateTime: Date.UTC(2024, 4, 1, 12, 0, 0, 250) },
        { uri: 'seg_00001.ts', duration: 4.2, programDateTime: Date.UTC(2024, 4, 1, 12, 0, 4, 250) },
      ],
    });
    expect(parsePlaylist(`${ffmpeg}\n#EXT-X-ENDLIST\n`).ended).toBe(true);
    expect(parseProgramDateTime('2024-05-01T14:00:00.000+02:00')).toBe(Date.UTC(2024, 4, 1, 12));
    expect(parseProgramDateTime('2024-05-01T12:00:00Z')).toBe(Date.UTC(2024, 4, 1, 12));
    expect(parseProgramDateTime('yesterday')).toBeUndefined();
  });

  it('writes EVENT playlists (ENDLIST at the end) and a live window of the last 5', () => {
    const segs = Array.from({ length: 7 }, (_, i) => ({ uri: `s_${i}.ts`, duration: i === 3 ? 4.6 : 4 }));
    const event = renderPlaylist(segs.slice(0, 2), { segmentDuration: 4, kind: 'event', ended: false });
    expect(event).toBe(['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-TARGETDURATION:4', '#EXT-X-MEDIA-SEQUENCE:0', '#EXT-X-PLAYLIST-TYPE:EVENT', '#EXTINF:4.000,', 's_0.ts', '#EXTINF:4.000,', 's_1.ts', ''].join('\n'));
    const done = renderPlaylist(segs, { segmentDuration: 4, kind: 'event', ended: true });
    expect(done).toContain('#EXT-X-TARGETDURATION:5\n');
    expect(done.endsWith('s_6.ts\n#EXT-X-ENDLIST\n')).toBe(true);
    const live = renderPlaylist(segs, { segmentDuration: 4, kind: 'live', ended: false });
    expect(live).toContain('#EXT-X-MEDIA-SEQUENCE:2\n');
    expect(live).not.toContain('PLAYLIST-TYPE');
    expect(parsePlaylist(live).segments.map((s) => s.uri)).toEqual(['s_2.ts', 's_3.ts', 's_4.ts', 's_5.ts', 's_6.ts']);
    const withTime = renderPlaylist([{ uri: 'a.ts', duration: 4, programDateTime: Date.UTC(2024, 0, 2, 3, 4, 5, 6) }], { segmentDuration: 4, kind: 'event', ended: false });
    expect(withTime).toContain('#EXT-X-PROGRAM-DATE-TIME:2024-01-02T03:04:05.006+00:00\n#EXTINF:4.000,\na.ts');
  });

  it('names segments and images like LiveKit (INDEX, TIMESTAMP in UTC, NONE_OVERWRITE)', () => {
    const t = Date.UTC(2024, 0, 2, 3, 4, 5, 67);
    expect(segmentName('rec/seg', 12, 'index', t)).toBe('rec/seg_00012.ts');
    expect(segmentName('seg', 12, 'timestamp', t)).toBe('seg_20240102030405067.ts');
    expect(segmentName('seg', 12, 'timestamp', undefined)).toBe('seg_00012.ts');
    expect(imageName('snaps/a', 3, 'index', t)).toBe('snaps/a_00003.jpeg');
    expect(imageName('a', 3, 'timestamp', t)).toBe('a_20240102030405067.jpeg');
    expect(imageName('a', 3, 'none', t)).toBe('a.jpeg');
  });
});

describe('stored-files ledger and the ordered upload queue', () => {
  const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-unit-'));
  const log = moduleLogger('test');

  it('the ledger ignores a line a kill cut short', () => {
    const dir = tmp();
    const l = new Ledger(dir);
    l.add('seg_00000.ts', 100);
    l.add('seg_00001.ts', 200);
    fs.appendFileSync(path.join(dir, 'stored.tsv'), 'seg_00002.ts\t3');
    expect([...l.read()]).toEqual([['seg_00000.ts', 100], ['seg_00001.ts', 200]]);
  });

  it('stores in order, skips superseded copies, keeps failing items local and hands them back', async () => {
    const stage = tmp();
    const out = path.join(tmp(), 'out');
    fs.writeFileSync(out, 'a file where the folder should be'); // every put fails for now
    const q = new UploadQueue(folderTarget(out), log);
    const order: string[] = [];
    const file = (n: string) => {
      fs.writeFileSync(path.join(stage, n), n);
      return path.join(stage, n);
    };
    q.push({ key: 'a/seg1.ts', contentType: 'video/mp2t', file: file('seg1'), done: () => order.push('seg1') });
    q.push({ key: 'a/p.m3u8', contentType: 'x', replaceable: true, render: () => Buffer.from(`v1 ${order.join(',')}`), done: () => order.push('p1') });
    q.push({ key: 'a/seg2.ts', contentType: 'video/mp2t', file: file('seg2'), done: () => order.push('seg2') });
    q.push({ key: 'a/p.m3u8', contentType: 'x', replaceable: true, render: () => Buffer.from(`v2 ${order.join(',')}`), done: () => order.push('p2') });
    const left = await q.flush(2);
    expect(left.map((i) => i.key)).toEqual(['a/seg1.ts', 'a/p.m3u8', 'a/seg2.ts', 'a/p.m3u8']);
    expect(fs.existsSync(path.join(stage, 'seg1'))).toBe(true);
    fs.rmSync(out);
    for (const i of left) q.push(i);
    expect(await q.flush(2)).toEqual([]);
    expect(order).toEqual(['seg1', 'seg2', 'p2']);
    expect(fs.readFileSync(path.join(out, 'a/p.m3u8'), 'utf8')).toBe('v2 seg1,seg2');
    expect(fs.readFileSync(path.join(out, 'a/seg2.ts'), 'utf8')).toBe('seg2');
    expect(fs.readdirSync(stage)).toEqual([]);
  });
});
