// HLS recordings through faults, with the real EgressClient and S3 (s3rver): a worker SIGKILLed
// mid-recording leaves in S3 a playlist whose every segment is there and plays, and the worker that
// takes over stores the rest and ends the playlist; S3 down at the end leaves the rest in the backup
// folder until S3 is back, then uploads it in order. (The outputs themselves: test/egress/segments.test.ts.)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { EgressStatus, EncodingOptions, SegmentedFileOutput } from 'livekit-server-sdk';
import { describe, expect, it } from 'vitest';
import { parsePlaylist } from '../../src/egress/worker/hlsPlaylist.ts';
import { sleep } from '../../src/time.ts';
import { BUCKET, childWorker, egressLookups, inProcessWorker } from '../helpers/egress.ts';
import { useEgressStack } from '../helpers/egressStack.ts';
import { decodeAll, download, ffprobe, sum } from '../helpers/hls.ts';
import { isAlive, waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';

const t = useEgressStack();
const { info, status } = egressLookups(() => t.egress);

describe('HLS segments through faults', () => {
  it('a SIGKILLed worker leaves a playable S3 playlist of stored segments; the rescuer stores the rest and ends it', async () => {
    const alice = await join(t.gw.url, 'hk', 'alice');
    t.participants.push(alice);
    await alice.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'VP8', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15'] });
    await alice.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'] });
    const child = childWorker(t.gw, { ROOMGATE_EGRESS_STALL_TIMEOUT: '4' });
    const started = await t.egress.startParticipantEgress(
      'hk',
      'alice',
      { segments: new SegmentedFileOutput({ filenamePrefix: 'killed/{publisher_identity}', livePlaylistName: 'killed/live', segmentDuration: 2, output: t.toS3() }) },
      { encodingOptions: new EncodingOptions({ width: 320, height: 240, framerate: 15, videoBitrate: 500 }) },
    );
    expect(started.result.case).toBe('segments'); // the only output: LiveKit's legacy result too
    expect(started.segmentResults[0]!.playlistName).toBe('killed/alice.m3u8');
    await status(started.egressId, EgressStatus.EGRESS_ACTIVE, 40_000);
    await waitFor(async () => {
      const keys = (await t.s3.list('killed/')).map((o) => o.key);
      return keys.includes('killed/alice.m3u8') && parsePlaylist((await t.s3.get('killed/alice.m3u8')).toString('utf8')).segments.length >= 2 ? true : undefined;
    }, 30_000, 'two segments in the S3 playlist');
    const ffmpegs = execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number).filter(Boolean);
    process.kill(child.pid, 'SIGKILL');
    await child.exited;

    // What the dead worker left in S3 plays: every listed segment is there, no ENDLIST yet.
    const left = await download(t.s3, 'killed/alice.m3u8');
    expect(left.ended).toBe(false);
    expect(left.segments.length).toBeGreaterThanOrEqual(2);
    const probed = ffprobe(['-live_start_index', '0', left.local]);
    expect(probed.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
    const decoded = decodeAll(left.local);
    expect(decoded.audio).toBe(true);
    expect(decoded.video).toBeGreaterThan(0);
    expect(Math.abs(decoded.duration - sum(left.segments.map((s) => s.duration)))).toBeLessThan(0.5);

    await waitFor(() => (ffmpegs.every((p) => !isAlive(p)) ? true : undefined), 20_000, 'orphaned FFmpeg to exit');
    expect((await info(started.egressId)).status).toBe(EgressStatus.EGRESS_ACTIVE);
    const rescuer = await inProcessWorker(t.gw, { ROOMGATE_EGRESS_STALL_TIMEOUT: '4' });
    t.workers.push(rescuer);
    const failed = await status(started.egressId, EgressStatus.EGRESS_FAILED, 40_000);
    expect(failed.error).toMatch(/worker .* stopped .*the media recorded before is kept/);
    const seg = failed.segmentResults[0]!;
    const final = await download(t.s3, 'killed/alice.m3u8');
    expect(final.ended).toBe(true);
    expect(final.segments.slice(0, left.segments.length)).toEqual(left.segments);
    // The segment being written at the kill (it holds at least the keyframe that closed the last one).
    expect(final.segments.length).toBeGreaterThan(left.segments.length);
    expect(Number(seg.segmentCount)).toBe(final.segments.length);
    expect(seg.playlistLocation).toBe(`${t.s3.endpoint}/${BUCKET}/killed/alice.m3u8`);
    expect(failed.result.case === 'segments' && failed.result.value.segmentCount).toBe(seg.segmentCount);
    const all = decodeAll(final.local);
    expect(Math.abs(all.duration - sum(final.segments.map((s) => s.duration)))).toBeLessThan(0.5);
    expect(parsePlaylist((await t.s3.get('killed/live.m3u8')).toString('utf8')).ended).toBe(true);
    await rescuer.close();
  });

  it('S3 down at the end: the rest waits in the backup folder and is uploaded in order when S3 is back', async () => {
    const worker = await inProcessWorker(t.gw);
    t.workers.push(worker);
    const carol = await join(t.gw.url, 'hb', 'carol');
    t.participants.push(carol);
    await carol.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'VP8', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15'] });
    await carol.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', 'sine=frequency=700:sample_rate=48000'] });
    const started = await t.egress.startParticipantEgress(
      'hb',
      'carol',
      { segments: new SegmentedFileOutput({ playlistName: 'outage/index', segmentDuration: 2, output: t.toS3() }) },
      { encodingOptions: new EncodingOptions({ width: 320, height: 240, framerate: 15, videoBitrate: 500 }) },
    );
    await waitFor(async () => ((await t.s3.list('outage/')).some((o) => o.key === 'outage/index.m3u8') ? true : undefined), 40_000, 'the first playlist in S3');
    await t.s3.stop();
    await sleep(3000); // segments completed meanwhile wait locally
    await t.egress.stopEgress(started.egressId);
    const ended = await status(started.egressId, EgressStatus.EGRESS_COMPLETE, 40_000);
    expect(ended.backupStorageUsed).toBe(true);
    const waiting = ended.segmentResults[0]!;
    expect(waiting.playlistLocation.startsWith(path.resolve(t.gw.config.egress.backup_dir))).toBe(true);
    expect(fs.existsSync(waiting.playlistLocation)).toBe(true);
    await t.s3.start();
    const uploaded = await waitFor(async () => {
      const i = await info(started.egressId);
      return i.segmentResults[0]!.playlistLocation.startsWith(t.s3.endpoint) ? i : undefined;
    }, 40_000, 'upload after S3 is back');
    const seg = uploaded.segmentResults[0]!;
    expect(seg.playlistLocation).toBe(`${t.s3.endpoint}/${BUCKET}/outage/index.m3u8`);
    expect(uploaded.details).toMatch(/segments uploaded from the backup folder after a retry/);
    const hls = await download(t.s3, 'outage/index.m3u8');
    expect(hls.ended).toBe(true);
    expect(hls.segments.length).toBe(Number(seg.segmentCount));
    expect(Math.abs(decodeAll(hls.local).duration - sum(hls.segments.map((s) => s.duration)))).toBeLessThan(0.5);
    expect(fs.existsSync(waiting.playlistLocation)).toBe(false);
    await worker.close();
  });
});
