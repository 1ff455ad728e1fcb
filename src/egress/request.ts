// LiveKit egress requests → one validated JobSpec plus the first EgressInfo (EGRESS_STARTING).
// Every refusal names the field and the reason (invalid_argument / not_found / unimplemented).
import {
  DirectFileOutput,
  EgressInfo,
  EgressSourceType,
  EgressStatus,
  EncodedFileOutput,
  EncodedFileType,
  EncodingOptions,
  EncodingOptionsPreset,
  FileInfo,
  ParticipantEgressRequest,
  S3Upload,
  SegmentedFileOutput,
  StreamInfo,
  StreamInfo_Status,
  StreamOutput,
  StreamProtocol,
  TrackCompositeEgressRequest,
  TrackEgressRequest,
  VideoCodec,
  type ImageOutput,
} from '@livekit/protocol';
import { z } from 'zod';
import { ApiError, invalidArgument, notFound } from '../errors.ts';
import { newId } from '../ids.ts';
import type { EgressSource, EncodingSpec, FileSpec, JobSpec, S3Settings } from './EgressTypes.ts';
import { normaliseStreamUrl, redactStreamUrl, StreamUrlError } from './urls.ts';
import { nowNs } from '../time.ts';

/** What validation needs to know about rooms and tracks (the SFU's RoomManager behind it). */
export interface EgressRoomLookup {
  /** The room's sid when the room exists (live or only created). */
  roomSid(name: string): Promise<string | undefined>;
  /** A track published in the live room. */
  track(room: string, trackSid: string): { identity: string; kind: 'audio' | 'video'; mimeType: string } | undefined;
}

/** Config defaults for S3 (request fields win). */
export interface S3Defaults {
  bucket?: string | undefined;
  region?: string | undefined;
  endpoint?: string | undefined;
  access_key?: string | undefined;
  secret?: string | undefined;
  force_path_style: boolean;
}

const unimplemented = (msg: string) => new ApiError('unimplemented', msg);

/** S3 bucket naming rules (AWS): 3–63 chars, lowercase letters, digits, dots, hyphens, no IP look-alike. */
const bucketName = z
  .string()
  .min(3, 'must be 3 to 63 characters')
  .max(63, 'must be 3 to 63 characters')
  .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/, 'may hold lowercase letters, digits, dots and hyphens, and must start and end with a letter or digit')
  .refine((b) => !b.includes('..'), 'must not contain two adjacent dots')
  .refine((b) => !/^\d+\.\d+\.\d+\.\d+$/.test(b), 'must not look like an IP address');

const PRESETS: Record<number, { width: number; height: number; framerate: number; videoBitrate: number }> = {
  [EncodingOptionsPreset.H264_720P_30]: { width: 1280, height: 720, framerate: 30, videoBitrate: 3000 },
  [EncodingOptionsPreset.H264_720P_60]: { width: 1280, height: 720, framerate: 60, videoBitrate: 4500 },
  [EncodingOptionsPreset.H264_1080P_30]: { width: 1920, height: 1080, framerate: 30, videoBitrate: 4500 },
  [EncodingOptionsPreset.H264_1080P_60]: { width: 1920, height: 1080, framerate: 60, videoBitrate: 6000 },
  [EncodingOptionsPreset.PORTRAIT_H264_720P_30]: { width: 720, height: 1280, framerate: 30, videoBitrate: 3000 },
  [EncodingOptionsPreset.PORTRAIT_H264_720P_60]: { width: 720, height: 1280, framerate: 60, videoBitrate: 4500 },
  [EncodingOptionsPreset.PORTRAIT_H264_1080P_30]: { width: 1080, height: 1920, framerate: 30, videoBitrate: 4500 },
  [EncodingOptionsPreset.PORTRAIT_H264_1080P_60]: { width: 1080, height: 1920, framerate: 60, videoBitrate: 6000 },
};

type Options = ParticipantEgressRequest['options'];

/** Preset / advanced options → what the worker's encoder needs. No options: passthrough when possible. */
export function encodingFrom(options: Options, hasStream: boolean): EncodingSpec {
  const base = { ...PRESETS[EncodingOptionsPreset.H264_720P_30]!, audioBitrate: 128, audioFrequency: 44100, keyFrameInterval: hasStream ? 2 : 4 };
  if (options.case === undefined) return { ...base, passthroughAllowed: true, profile: 'high' };
  if (options.case === 'preset') {
    if (options.value === EncodingOptionsPreset.PASSTHROUGH) return { ...base, passthroughAllowed: true, profile: 'high' };
    const preset = PRESETS[options.value];
    if (!preset) throw invalidArgument(`unknown encoding preset ${String(options.value)}`, 'preset');
    return { ...base, ...preset, passthroughAllowed: false, profile: 'high' };
  }
  const a: EncodingOptions = options.value;
  const check = (v: number, name: string, min: number, max: number) => {
    if (v !== 0 && (v < min || v > max || !Number.isFinite(v))) throw invalidArgument(`advanced.${name} must be between ${min} and ${max} (got ${v})`, `advanced.${name}`);
  };
  check(a.width, 'width', 16, 3840);
  check(a.height, 'height', 16, 3840);
  check(a.framerate, 'framerate', 1, 60);
  check(a.videoBitrate, 'video_bitrate', 100, 50_000);
  check(a.audioBitrate, 'audio_bitrate', 16, 512);
  check(a.keyFrameInterval, 'key_frame_interval', 0.5, 20);
  if (a.audioFrequency !== 0 && ![8000, 16000, 22050, 24000, 32000, 44100, 48000].includes(a.audioFrequency)) {
    throw invalidArgument(`advanced.audio_frequency ${a.audioFrequency} is not supported (8000…48000 Hz)`, 'advanced.audio_frequency');
  }
  if (a.videoCodec !== VideoCodec.DEFAULT_VC && a.videoCodec !== VideoCodec.H264_BASELINE && a.videoCodec !== VideoCodec.H264_MAIN && a.videoCodec !== VideoCodec.H264_HIGH) {
    throw invalidArgument(`advanced.video_codec ${VideoCodec[a.videoCodec] ?? a.videoCodec} is not supported; participant egress encodes H.264`, 'advanced.video_codec');
  }
  // Even sizes: yuv420p needs them.
  const even = (n: number) => Math.max(2, Math.round(n / 2) * 2);
  return {
    passthroughAllowed: false,
    width: even(a.width || base.width),
    height: even(a.height || base.height),
    framerate: a.framerate || base.framerate,
    videoBitrate: a.videoBitrate || base.videoBitrate,
    audioBitrate: a.audioBitrate || base.audioBitrate,
    audioFrequency: a.audioFrequency || base.audioFrequency,
    keyFrameInterval: a.keyFrameInterval || base.keyFrameInterval,
    profile: a.videoCodec === VideoCodec.H264_BASELINE ? 'baseline' : a.videoCodec === VideoCodec.H264_MAIN ? 'main' : 'high',
  };
}

/** The request's S3 fields over the config's; a bad bucket name is refused here, not at upload time. */
export function s3From(upload: S3Upload | undefined, defaults: S3Defaults): S3Settings | undefined {
  if (!upload && !defaults.bucket) return undefined;
  const bucket = upload?.bucket || defaults.bucket || '';
  if (!bucket) throw invalidArgument('s3.bucket is required (no default bucket is configured)', 's3.bucket');
  const parsed = bucketName.safeParse(bucket);
  if (!parsed.success) throw invalidArgument(`s3.bucket '${bucket.slice(0, 80)}' is not a valid bucket name: ${parsed.error.issues[0]!.message}`, 's3.bucket');
  const endpoint = upload?.endpoint || defaults.endpoint || '';
  if (endpoint && !/^https?:\/\/[^/]+/.test(endpoint)) throw invalidArgument(`s3.endpoint '${endpoint.slice(0, 200)}' must be an http:// or https:// URL`, 's3.endpoint');
  return {
    bucket,
    endpoint,
    region: upload?.region || defaults.region || 'us-east-1',
    accessKey: upload?.accessKey || defaults.access_key || '',
    secret: upload?.secret || defaults.secret || '',
    sessionToken: upload?.sessionToken || '',
    forcePathStyle: upload?.forcePathStyle || defaults.force_path_style,
  };
}

type Storage = EncodedFileOutput['output'] | DirectFileOutput['output'];

function storageOf(output: Storage, defaults: S3Defaults): S3Settings | undefined {
  if (output.case === undefined) return s3From(undefined, defaults);
  if (output.case === 's3') return s3From(output.value, defaults);
  throw unimplemented(`${output.case} storage is not supported; use s3 (or no storage for the local folder)`);
}

/** Template values known when the request arrives. */
export interface TemplateValues {
  roomName: string;
  roomId: string;
  identity?: string;
  trackId?: string;
  trackType?: string;
  trackSource?: string;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** {room_name}, {room_id}, {time} (local YYYY-MM-DDTHHMMSS), {utc} (YYYYMMDDHHMMSSmmm), {publisher_identity}, {track_*}. */
export function renderFilepath(template: string, v: TemplateValues, now = new Date()): string {
  const time = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}T${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  const utc = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}${pad(now.getUTCMilliseconds(), 3)}`;
  const values: Record<string, string> = {
    room_name: v.roomName,
    room_id: v.roomId,
    time,
    utc,
    publisher_identity: v.identity ?? '',
    track_id: v.trackId ?? '',
    track_type: v.trackType ?? '',
    track_source: v.trackSource ?? '',
  };
  return template.replace(/\{([a-z_]+)\}/g, (all, key: string) => values[key] ?? all);
}

/** A relative path under the output folder or bucket: no absolute paths, no `..`, safe characters. */
function safeRelative(p: string): string {
  const cleaned = p.replace(/\\/g, '/').replace(/^\/+/, '');
  const segments = cleaned.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.some((s) => s === '..')) throw invalidArgument(`filepath '${p.slice(0, 200)}' must not contain '..'`, 'filepath');
  const out = segments.map((s) => s.replace(/[^\w.@=+,-]/g, '_')).join('/');
  if (!out) throw invalidArgument('filepath is empty after rendering', 'filepath');
  if (out.length > 512) throw invalidArgument('filepath is longer than 512 characters', 'filepath');
  return out;
}

function withExtension(p: string, ext: string): string {
  return p.toLowerCase().endsWith(ext) ? p : `${p}${ext}`;
}

/** The encoded file (participant / track composite): MP4 (fragmented) or audio-only OGG. */
export function encodedFile(out: EncodedFileOutput, v: TemplateValues, hasVideo: boolean, defaults: S3Defaults): FileSpec {
  if (out.fileType === EncodedFileType.MP3) throw unimplemented('file_type MP3 is not supported; use MP4 (or OGG for audio only)');
  if (out.fileType === EncodedFileType.OGG && hasVideo) throw invalidArgument('file_type OGG holds audio only; use MP4 for audio and video', 'file_type');
  const ogg = out.fileType === EncodedFileType.OGG;
  const ext = ogg ? '.ogg' : '.mp4';
  const template = out.filepath && !out.filepath.endsWith('/') ? out.filepath : `${out.filepath}{room_name}-{time}`;
  const s3 = storageOf(out.output, defaults);
  return { filepath: withExtension(safeRelative(renderFilepath(template, v)), ext), fileType: ogg ? 'ogg' : 'mp4', ...(s3 ? { s3 } : {}) };
}

export function streamUrls(out: StreamOutput): string[] {
  if (out.protocol !== StreamProtocol.DEFAULT_PROTOCOL && out.protocol !== StreamProtocol.RTMP) {
    throw unimplemented(`stream protocol ${StreamProtocol[out.protocol] ?? out.protocol} is not supported; use RTMP(S)`);
  }
  return checkUrls(out.urls);
}

export function checkUrls(urls: string[]): string[] {
  const seen = new Set<string>();
  return urls.map((u, i) => {
    try {
      const n = normaliseStreamUrl(u);
      if (seen.has(n)) throw new StreamUrlError(`stream url #${i + 1} is given twice`);
      seen.add(n);
      return n;
    } catch (err) {
      if (err instanceof StreamUrlError) throw invalidArgument(err.message, 'urls');
      throw err;
    }
  });
}

export interface Outputs {
  fileOutputs: EncodedFileOutput[];
  streamOutputs: StreamOutput[];
  segmentOutputs: SegmentedFileOutput[];
  imageOutputs: ImageOutput[];
}

/**
 * The SDK sends a single output twice (the legacy oneof and a one-element list): the lists win,
 * the legacy field counts only when every list is empty (LiveKit's updateEncodedOutputs).
 */
export function outputsOf(req: Outputs, legacy?: TrackCompositeEgressRequest['output']): Outputs {
  const lists = req.fileOutputs.length + req.streamOutputs.length + req.segmentOutputs.length + req.imageOutputs.length;
  if (lists > 0 || !legacy || legacy.case === undefined) return req;
  return {
    fileOutputs: legacy.case === 'file' ? [legacy.value] : [],
    streamOutputs: legacy.case === 'stream' ? [legacy.value] : [],
    segmentOutputs: legacy.case === 'segments' ? [legacy.value] : [],
    imageOutputs: [],
  };
}

/** One file, one stream (many URLs), one segments output; at least one output; HLS and images not yet. */
export function checkOutputCounts(o: Outputs): void {
  if (o.fileOutputs.length > 1) throw invalidArgument(`at most one file output is allowed (got ${o.fileOutputs.length})`, 'file_outputs');
  if (o.streamOutputs.length > 1) throw invalidArgument(`at most one stream output is allowed (got ${o.streamOutputs.length}); put several urls in it`, 'stream_outputs');
  if (o.segmentOutputs.length > 1) throw invalidArgument(`at most one segments output is allowed (got ${o.segmentOutputs.length})`, 'segment_outputs');
  if (o.fileOutputs.length + o.streamOutputs.length + o.segmentOutputs.length + o.imageOutputs.length === 0) {
    throw invalidArgument('no outputs: give a file output or a stream output', 'outputs');
  }
  if (o.segmentOutputs.length > 0) throw unimplemented('segmented (HLS) output is not supported yet; use a file or stream output');
  if (o.imageOutputs.length > 0) throw unimplemented('image output is not supported yet; use a file or stream output');
}

export interface Validated {
  spec: JobSpec;
  info: EgressInfo;
}

/** The echo of the request in EgressInfo.request, with stream keys and S3 credentials removed. */
function redactRequest<T extends ParticipantEgressRequest | TrackCompositeEgressRequest | TrackEgressRequest>(req: T): T {
  const copy = req.clone() as T;
  const scrubS3 = (o: { output: Storage }) => {
    if (o.output.case === 's3') {
      o.output.value.accessKey = '';
      o.output.value.secret = '';
      o.output.value.sessionToken = '';
    }
  };
  const scrubStream = (s: StreamOutput) => {
    s.urls = s.urls.map(redactStreamUrl);
  };
  if ('fileOutputs' in copy) copy.fileOutputs.forEach(scrubS3);
  if ('streamOutputs' in copy) copy.streamOutputs.forEach(scrubStream);
  if (copy instanceof TrackCompositeEgressRequest) {
    if (copy.output.case === 'file') scrubS3(copy.output.value);
    if (copy.output.case === 'stream') scrubStream(copy.output.value);
  }
  if (copy instanceof TrackEgressRequest && copy.output.case === 'file') scrubS3(copy.output.value);
  if (copy instanceof TrackEgressRequest && copy.output.case === 'websocketUrl') copy.output.value = redactStreamUrl(copy.output.value);
  return copy;
}

export function initialInfo(spec: JobSpec, request: EgressInfo['request']): EgressInfo {
  return new EgressInfo({
    egressId: spec.egressId,
    roomId: spec.roomId,
    roomName: spec.roomName,
    sourceType: EgressSourceType.SDK,
    status: EgressStatus.EGRESS_STARTING,
    updatedAt: nowNs(),
    request,
    streamResults: (spec.stream?.urls ?? []).map((u) => new StreamInfo({ url: redactStreamUrl(u), status: StreamInfo_Status.ACTIVE })),
    fileResults: spec.file ? [new FileInfo({ filename: spec.file.filepath })] : [],
  });
}

export async function roomOf(lookup: EgressRoomLookup, roomName: string): Promise<string> {
  if (!roomName) throw invalidArgument('room_name is required', 'room_name');
  const sid = await lookup.roomSid(roomName);
  if (!sid) throw notFound(`room '${roomName}' does not exist`);
  return sid;
}

function buildSpec(egressId: string, roomName: string, roomId: string, source: EgressSource, o: Outputs, v: TemplateValues, hasVideo: boolean, options: Options, defaults: S3Defaults) {
  checkOutputCounts(o);
  const urls = o.streamOutputs[0] ? streamUrls(o.streamOutputs[0]) : undefined;
  const file = o.fileOutputs[0] ? encodedFile(o.fileOutputs[0], v, hasVideo, defaults) : undefined;
  if (!file && (!urls || urls.length === 0)) {
    throw invalidArgument('the stream output has no urls and there is no other output', 'stream_outputs.urls');
  }
  const spec: JobSpec = {
    egressId,
    roomName,
    roomId,
    source,
    encoding: encodingFrom(options, urls !== undefined),
    ...(file ? { file } : {}),
    ...(urls ? { stream: { urls } } : {}),
    createdAt: Date.now(),
  };
  return spec;
}

export async function validateParticipant(req: ParticipantEgressRequest, lookup: EgressRoomLookup, s3: S3Defaults): Promise<Validated> {
  const roomId = await roomOf(lookup, req.roomName);
  if (!req.identity) throw invalidArgument('identity is required', 'identity');
  const egressId = newId('EG_');
  const v: TemplateValues = { roomName: req.roomName, roomId, identity: req.identity };
  const spec = buildSpec(egressId, req.roomName, roomId, { kind: 'participant', identity: req.identity, screenShare: req.screenShare }, outputsOf(req), v, true, req.options, s3);
  return { spec, info: initialInfo(spec, { case: 'participant', value: redactRequest(req) }) };
}

export async function validateTrackComposite(req: TrackCompositeEgressRequest, lookup: EgressRoomLookup, s3: S3Defaults): Promise<Validated> {
  const roomId = await roomOf(lookup, req.roomName);
  if (!req.audioTrackId && !req.videoTrackId) throw invalidArgument('audio_track_id or video_track_id is required', 'video_track_id');
  const find = (sid: string, kind: 'audio' | 'video', field: string) => {
    const t = lookup.track(req.roomName, sid);
    if (!t) throw notFound(`track '${sid}' (${field}) is not published in room '${req.roomName}'`);
    if (t.kind !== kind) throw invalidArgument(`${field} '${sid}' is a ${t.kind} track`, field);
    return t;
  };
  const audio = req.audioTrackId ? find(req.audioTrackId, 'audio', 'audio_track_id') : undefined;
  const video = req.videoTrackId ? find(req.videoTrackId, 'video', 'video_track_id') : undefined;
  const identity = (video ?? audio)!.identity;
  const egressId = newId('EG_');
  const v: TemplateValues = { roomName: req.roomName, roomId, identity };
  const source: EgressSource = {
    kind: 'track_composite',
    identity,
    ...(req.audioTrackId ? { audioTrackId: req.audioTrackId } : {}),
    ...(req.videoTrackId ? { videoTrackId: req.videoTrackId } : {}),
  };
  const spec = buildSpec(egressId, req.roomName, roomId, source, outputsOf(req, req.output), v, video !== undefined, req.options, s3);
  return { spec, info: initialInfo(spec, { case: 'trackComposite', value: redactRequest(req) }) };
}

/** Track egress copies the codec: Opus → .ogg, VP8 → .webm, H.264 → .mp4 (fragmented). */
export function trackExtension(mimeType: string): string {
  const m = mimeType.toLowerCase();
  if (m === 'audio/opus') return '.ogg';
  if (m === 'video/vp8') return '.webm';
  if (m === 'video/h264') return '.mp4';
  throw unimplemented(`track egress of ${mimeType} is not supported`);
}

export async function validateTrack(req: TrackEgressRequest, lookup: EgressRoomLookup, s3: S3Defaults): Promise<Validated> {
  const roomId = await roomOf(lookup, req.roomName);
  if (!req.trackId) throw invalidArgument('track_id is required', 'track_id');
  if (req.output.case === undefined) throw invalidArgument('no outputs: give a file output', 'output');
  if (req.output.case === 'websocketUrl') throw unimplemented('websocket_url output is not supported yet; use a file output');
  const track = lookup.track(req.roomName, req.trackId);
  if (!track) throw notFound(`track '${req.trackId}' is not published in room '${req.roomName}'`);
  const out: DirectFileOutput = req.output.value;
  const ext = trackExtension(track.mimeType);
  const v: TemplateValues = { roomName: req.roomName, roomId, identity: track.identity, trackId: req.trackId, trackType: track.kind, trackSource: '' };
  const template = out.filepath && !out.filepath.endsWith('/') ? out.filepath : `${out.filepath}{room_name}-{track_id}-{time}`;
  const s3Settings = storageOf(out.output, s3);
  const egressId = newId('EG_');
  const spec: JobSpec = {
    egressId,
    roomName: req.roomName,
    roomId,
    source: { kind: 'track', trackId: req.trackId, identity: track.identity },
    file: { filepath: withExtension(safeRelative(renderFilepath(template, v)), ext), fileType: 'auto', ...(s3Settings ? { s3: s3Settings } : {}) },
    createdAt: Date.now(),
  };
  return { spec, info: initialInfo(spec, { case: 'track', value: redactRequest(req) }) };
}
