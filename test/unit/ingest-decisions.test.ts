// Pure decisions of the ingest path: what an FLV stream carries, simulcast layers per LiveKit's
// presets, and passthrough versus re-encode for URL sources.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IngressInfo, IngressVideoEncodingOptions, IngressVideoEncodingPreset, IngressVideoOptions, VideoLayer } from '@livekit/protocol';
import type AVPacket from 'node-media-server/src/core/avpacket.js';
import { describe, expect, it } from 'vitest';
import { InputMeter, hasReordering, metadataTag, parseAudioHeader, parseAvcSequenceHeader, PKT } from '../../src/ingress/rtmp/flv.ts';
import { planForProbe } from '../../src/ingress/UrlIngest.ts';
import { videoLayers } from '../../src/ingress/videoLayers.ts';
import { rootLogger } from '../../src/logger.ts';

/** The sequence header x264 wrote for 1280x720 constrained baseline, as node-media-server delivers it. */
const AVC_720P = '1700000000' + '0142c01fffe10017' + '6742c01fda0140' + '16ec0440000003004000000f03c60ca8' + '010004' + '68ce3c80';

const packet = (p: Partial<AVPacket>): AVPacket => ({ codec_id: 7, codec_type: 9, flags: PKT.INTER, pts: 0, dts: 0, size: 0, data: Buffer.alloc(0), ...p });

describe('FLV stream facts', () => {
  it('reads the picture size and profile from an AVC sequence header', () => {
    const tag = Buffer.from(AVC_720P, 'hex');
    expect(parseAvcSequenceHeader(tag)).toEqual({ width: 1280, height: 720, profile: 0x42, level: 0x1f });
    expect(parseAvcSequenceHeader(Buffer.from('17000000000242', 'hex'))).toBeUndefined();
  });

  it('reads AAC sample rate and channels from the AudioSpecificConfig, else from the FLV flags', () => {
    expect(parseAudioHeader(Buffer.from('af001208', 'hex'))).toEqual({ sampleRate: 44100, channels: 1 });
    expect(parseAudioHeader(Buffer.from('af001190', 'hex'))).toEqual({ sampleRate: 48000, channels: 2 });
    expect(parseAudioHeader(Buffer.from('2f', 'hex'))).toEqual({ sampleRate: 44100, channels: 2 }); // MP3, 44 kHz stereo flags
  });

  it('detects B-frames from a composition offset on video frames only', () => {
    expect(hasReordering(packet({ flags: PKT.KEYFRAME, pts: 67, dts: 0 }))).toBe(true);
    expect(hasReordering(packet({ flags: PKT.INTER, pts: 33, dts: 33 }))).toBe(false);
    expect(hasReordering(packet({ codec_type: 8, flags: PKT.AUDIO, pts: 5, dts: 0 }))).toBe(false);
  });

  it('measures frame rate, bitrate and keyframe interval from packet timestamps', () => {
    const m = new InputMeter();
    for (let i = 0; i <= 60; i++) m.add(packet({ flags: i % 30 === 0 ? PKT.KEYFRAME : PKT.INTER, dts: Math.round(i * (1000 / 30)), size: 5000 }));
    expect(m.gopMs).toBe(1000);
    const r = m.take();
    expect(r.framerate).toBeCloseTo(30, 0);
    expect(r.videoBitrate).toBe(Math.round((61 * 5000 * 8) / 2));
    expect(m.take().framerate).toBe(0); // a new window
  });

  it('writes an onMetaData tag FFmpeg parses', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-flv-'));
    const file = path.join(dir, 'meta.flv');
    const header = Buffer.from('464c5601010000000900000000', 'hex'); // FLV, video only
    const avc = Buffer.from(AVC_720P, 'hex');
    const videoTag = Buffer.alloc(11 + avc.length + 4);
    videoTag[0] = 9;
    videoTag.writeUIntBE(avc.length, 1, 3);
    avc.copy(videoTag, 11);
    videoTag.writeUInt32BE(11 + avc.length, 11 + avc.length);
    fs.writeFileSync(file, Buffer.concat([header, videoTag, metadataTag({ width: 1280, height: 720, roomgate: 1 })]));
    const out = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'format_tags', '-of', 'json', file], { encoding: 'utf8' });
    expect(out.status, out.stderr).toBe(0);
    // width/height become stream parameters; keys FFmpeg does not know surface as format tags.
    expect(JSON.parse(out.stdout).format.tags).toEqual({ roomgate: '1' });
  });
});

describe('simulcast layers', () => {
  it('follows LiveKit presets: halving sizes, bitrate by area^0.75, lowest layer first', () => {
    expect(videoLayers(undefined)).toEqual([
      { width: 320, height: 180, fps: 30, bitrate: 237_500 },
      { width: 640, height: 360, fps: 30, bitrate: 671_751 },
      { width: 1280, height: 720, fps: 30, bitrate: 1_900_000 },
    ]);
    const p540 = new IngressVideoOptions({ encodingOptions: { case: 'preset', value: IngressVideoEncodingPreset.H264_540P_25FPS_2_LAYERS } });
    expect(videoLayers(p540).map((l) => [l.width, l.height, l.fps])).toEqual([[480, 270, 25], [960, 540, 25]]);
    const one = new IngressVideoOptions({ encodingOptions: { case: 'preset', value: IngressVideoEncodingPreset.H264_1080P_30FPS_1_LAYER } });
    expect(videoLayers(one)).toEqual([{ width: 1920, height: 1080, fps: 30, bitrate: 3_500_000 }]);
  });

  it('takes explicit layers as given, sorted, with even sizes', () => {
    const opts = new IngressVideoOptions({
      encodingOptions: {
        case: 'options',
        value: new IngressVideoEncodingOptions({ frameRate: 24, layers: [new VideoLayer({ width: 853, height: 480, bitrate: 900_000 }), new VideoLayer({ width: 427, height: 240, bitrate: 300_000 })] }),
      },
    });
    expect(videoLayers(opts)).toEqual([
      { width: 428, height: 240, fps: 24, bitrate: 300_000 },
      { width: 854, height: 480, fps: 24, bitrate: 900_000 },
    ]);
  });
});

describe('URL source plan', () => {
  const info = (extra: Partial<IngressInfo> = {}) => new IngressInfo({ ingressId: 'IN_x', ...extra });
  const log = rootLogger();
  const h264 = { codec: 'h264', width: 1280, height: 720, fps: 30, bFrames: false, bitrate: 2e6 };
  const aac = { codec: 'aac', channels: 2, sampleRate: 48000, bitrate: 128e3 };

  it('passes H.264 without B-frames through and paces files with -re', () => {
    const plan = planForProbe({ video: h264, audio: aac, duration: 10 }, info(), 'https://cdn/x.mp4', log);
    expect(plan).toMatchObject({ video: 'copy', audio: 'opus', input: ['-re', '-i', 'https://cdn/x.mp4'], width: 1280, height: 720 });
    expect(planForProbe({ audio: { ...aac, codec: 'opus' }, duration: 0 }, info(), 'srt://host:9000', log)).toMatchObject({ audio: 'copy', input: ['-i', 'srt://host:9000'] });
  });

  it('re-encodes B-frames and other codecs at the source size, and follows enableTranscoding', () => {
    expect(planForProbe({ video: { ...h264, bFrames: true }, duration: 1 }, info(), 'http://a/b', log).video).toEqual([{ width: 1280, height: 720, fps: 30, bitrate: 1_900_000 }]);
    expect(planForProbe({ video: { ...h264, codec: 'vp9' }, duration: 1 }, info(), 'http://a/b', log).video).toHaveLength(1);
    expect(planForProbe({ video: h264, duration: 1 }, info({ enableTranscoding: true }), 'http://a/b', log).video).toHaveLength(3);
  });
});
