// FFmpeg command lines of an egress, in one place: the RTP input, the encoder (H.264 + AAC, or
// H.264 passthrough) writing MPEG-TS to its stdout, and the sinks that read that TS: the file
// (fragmented MP4, or OGG for audio only), one RTMP(S) push per destination, the HLS segmenter
// and one JPEG snapshotter per image output.
import path from 'node:path';
import type { EncodingSpec, ReplayMode } from '../contract.ts';

/**
 * RTP input from an SDP; FFmpeg ends by itself `timeoutS` after the RTP stops. The worker's RTP
 * input (tapInput.ts) passes video on from a keyframe with its parameter sets, so the probe ends
 * after the first few pictures (no frame-rate count: fpsprobesize 0); its bounds are only there
 * for a source without one, generous so that a starved FFmpeg does not give up on a picture's size
 * (measured before the gate: "dimensions not set" under load with 0.3 s / 100 kB). The probed
 * packets are kept (no `-fflags nobuffer`, which drops them): they hold the first keyframe, and
 * without it a copy waits for the next one, a whole keyframe interval (8.3 s from OBS).
 */
export function rtpInput(sdpFile: string, timeoutS: number): string[] {
  return [
    '-protocol_whitelist', 'file,udp,rtp',
    '-listen_timeout', String(timeoutS),
    '-analyzeduration', '2000000',
    '-probesize', '5000000',
    '-fpsprobesize', '0',
    // A cached keyframe interval arrives as a burst (src/egress/relayFeed.ts): room for it.
    '-buffer_size', String(4 * 1024 * 1024),
    '-reorder_queue_size', '256',
    '-i', sdpFile,
  ];
}

/** Fragmented MP4: every fragment is complete on disk, so a crash leaves a playable file. */
export const FRAGMENTED_MP4 = ['-movflags', '+frag_keyframe+empty_moov+default_base_moof', '-f', 'mp4'];

/**
 * Track egress: the codec as it is (-c copy) into the container its extension names. `-y` only
 * because the worker has just created `file` itself, exclusively (Storage.localFile): it is this
 * egress's own empty file, never another's recording.
 */
export function trackToFile(sdpFile: string, file: string, timeoutS: number): string[] {
  const ext = file.slice(file.lastIndexOf('.')).toLowerCase();
  const container = ext === '.ogg' ? ['-f', 'ogg'] : ext === '.webm' ? ['-f', 'webm'] : FRAGMENTED_MP4;
  return [...rtpInput(sdpFile, timeoutS), '-map', '0', '-c', 'copy', ...container, '-y', file];
}

export interface EncoderPlan {
  hasVideo: boolean;
  hasAudio: boolean;
  /** The source's video codec (mime type), to decide passthrough. */
  videoMime?: string;
  encoding: EncodingSpec;
  /** Where this encoder's timestamps start (seconds): keeps the sinks' timeline going across re-attaches. */
  offsetS: number;
}

export function isPassthrough(plan: EncoderPlan): boolean {
  return plan.encoding.passthroughAllowed && plan.videoMime?.toLowerCase() === 'video/h264';
}

/**
 * How the gateway replays a server-fed track's kept pictures into this encoder (relayFeed.ts): an
 * encoder always starts on them. Re-encoded, the decoder runs through the kept keyframe interval
 * and the encoder drops the pictures older than the request (below), so the output starts at the
 * request with a picture. Copied (passthrough), the output starts at the kept keyframe, up to one
 * keyframe interval of video before the request and its audio, as a track egress does.
 */
export function encoderReplay(plan: EncoderPlan): ReplayMode {
  return plan.hasVideo ? 'preroll' : 'live';
}

/** Whether the encoder drops replayed pictures older than the request (re-encoded video only). */
function trimsReplay(plan: EncoderPlan): boolean {
  return plan.hasVideo && !isPassthrough(plan);
}

/** RTP in → H.264 (copied or encoded) + AAC → MPEG-TS on stdout. */
export function encoderArgs(sdpFile: string, plan: EncoderPlan, timeoutS: number): string[] {
  const e = plan.encoding;
  const args = [...rtpInput(sdpFile, timeoutS)];
  if (plan.hasVideo) {
    args.push('-map', '0:v:0');
    if (isPassthrough(plan)) {
      args.push('-c:v', 'copy');
    } else {
      const gop = Math.max(1, Math.round(e.framerate * e.keyFrameInterval));
      // The input's clock is the worker's arrival clock, 0 at the first sender report
      // (tapInput.ts): replayed pictures are older, so their times are negative. -copyts keeps
      // them so (FFmpeg would otherwise start the timeline at the oldest), and trim drops them
      // once decoded: the first picture out is the newest kept one, at once, in sync with audio.
      args.push(
        '-copyts',
        '-vf', `trim=start=0,scale=${e.width}:${e.height}:force_original_aspect_ratio=decrease,pad=${e.width}:${e.height}:(ow-iw)/2:(oh-ih)/2,fps=${e.framerate},format=yuv420p`,
        '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', e.profile,
        '-b:v', `${e.videoBitrate}k`, '-maxrate', `${e.videoBitrate}k`, '-bufsize', `${e.videoBitrate * 2}k`,
        '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0',
      );
    }
  }
  if (plan.hasAudio) {
    args.push('-map', '0:a:0', ...(trimsReplay(plan) ? ['-af', 'atrim=start=0'] : []), '-c:a', 'aac', '-b:a', `${e.audioBitrate}k`, '-ar', String(e.audioFrequency), '-ac', '2');
  }
  args.push('-output_ts_offset', plan.offsetS.toFixed(3), '-f', 'mpegts', '-muxdelay', '0', '-muxpreload', '0', 'pipe:1');
  return args;
}

// How a sink reads the encoder's MPEG-TS. The FFmpeg CLI scans for PMTs (scan_all_pmts=1) and so
// probes its whole analyzeduration, which was every sink's start-up delay (0.5 s for a stream
// destination, 2 s for the file). With the scan off the probe ends as soon as every stream of the
// PMT has its parameters (measured: ~0.1 s instead of 2 s), and fpsprobesize 0 skips counting 20
// frames for a frame rate the copy does not need. Each sink starts at a video keyframe
// (TsKeyframeGate), so the picture's parameters come at once; analyzeduration is now only the
// bound for a stream whose first packets trail (audio behind video), long enough to wait for them.
// The HLS segmenter and the snapshotter read the same way.
// The bound is in media time, and audio can trail video by more than one keyframe interval of it: a
// passthrough encoder starts its video at the kept keyframe (encoderReplay), up to 8.3 s before the
// request from OBS and its audio; a compositor's mixed audio trails its first pictures by seconds on
// a loaded machine. With 6 s the file sink, which gets one start, failed "Could not write header …
// output stream 0:1" (1 of 5 passthrough recordings of an 8.3 s source). An encoder writes nothing
// before all its streams have media (FFmpeg initialises every output stream first), so a generous
// bound never holds a sink back: the probe ends as soon as each stream has shown its parameters.
const TS_READ = ['-fflags', '+genpts', '-scan_all_pmts', '0', '-fpsprobesize', '0', '-analyzeduration', '30000000', '-probesize', '40000000', '-f', 'mpegts', '-i', 'pipe:0'];
const TS_INPUT = [...TS_READ, '-map', '0'];

/** `file` was created exclusively for this egress (Storage.localFile): `-y` writes over nothing else. */
export function fileSinkArgs(file: string, fileType: 'mp4' | 'ogg'): string[] {
  if (fileType === 'ogg') return [...TS_INPUT, '-vn', '-c:a', 'libopus', '-b:a', '96k', '-f', 'ogg', '-y', file];
  // MPEG-TS carries AAC as ADTS; MP4 wants the raw AAC config.
  return [...TS_INPUT, '-c', 'copy', '-bsf:a', 'aac_adtstoasc', ...FRAGMENTED_MP4, '-y', file];
}

export function streamSinkArgs(url: string): string[] {
  // rw_timeout: a destination that stops reading fails (and is retried) instead of hanging.
  return [...TS_INPUT, '-c', 'copy', '-rw_timeout', '10000000', '-flvflags', 'no_duration_filesize', '-f', 'flv', url];
}

/** The segmenter's own playlist (in its staging folder): which segments are complete, and when they start. */
export const HLS_LOCAL_PLAYLIST = 'ffmpeg.m3u8';
/** Local segment names; the stored names are chosen when each is uploaded. */
export const HLS_LOCAL_SEGMENT = /^seg_(\d+)\.ts$/;
export const IMAGE_LOCAL_FILE = /^img_(\d+)\.jpeg$/;

/**
 * MPEG-TS segments cut at the first keyframe after each `segmentDuration`, listed in an EVENT
 * playlist only once complete (temp_file: written beside, renamed when done), each with the wall
 * clock of its start (program_date_time, for TIMESTAMP names).
 */
export function segmentSinkArgs(dir: string, segmentDuration: number): string[] {
  return [
    ...TS_INPUT, '-c', 'copy',
    '-f', 'hls', '-hls_time', String(segmentDuration), '-hls_playlist_type', 'event', '-hls_list_size', '0',
    '-hls_flags', 'temp_file+program_date_time', '-hls_segment_type', 'mpegts',
    '-hls_segment_filename', path.join(dir, 'seg_%05d.ts'), path.join(dir, HLS_LOCAL_PLAYLIST),
  ];
}

/**
 * One JPEG every `captureInterval` seconds of media, scaled into width × height (letterboxed, as
 * the encoder does) or by one side keeping the aspect ratio; written atomically (renamed when done).
 */
export function imageSinkArgs(dir: string, o: { captureInterval: number; width: number; height: number }): string[] {
  const { width: w, height: h } = o;
  const scale = w && h ? `,scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2` : w ? `,scale=${w}:-2` : h ? `,scale=-2:${h}` : '';
  return [
    ...TS_READ, '-map', '0:v:0',
    '-vf', `fps=1/${o.captureInterval}${scale}`, '-c:v', 'mjpeg', '-q:v', '3',
    '-f', 'image2', '-atomic_writing', '1', '-start_number', '0', path.join(dir, 'img_%05d.jpeg'),
  ];
}
