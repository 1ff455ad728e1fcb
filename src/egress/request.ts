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
  ImagesInfo,
  ParticipantEgressRequest,
  SegmentedFileOutput,
  SegmentsInfo,
  StreamInfo,
  StreamInfo_Status,
  StreamOutput,
  StreamProtocol,
  TrackCompositeEgressRequest,
  TrackEgressRequest,
  VideoCodec,
  type ImageOutput,
} from '@livekit/protocol';
import { ApiError, invalidArgument, notFound } from '../errors.ts';
import { newId } from '../ids.ts';
import type { EgressSource, EncodingSpec, FileSpec, JobSpec, SegmentsSpec } from './contract.ts';
import { renderFilepath, safeRelative, storageOf, withExtension, type S3Defaults, type StorageChoice, type TemplateValues } from './outputPaths.ts';
import { encodingForSegments, imagesFrom, segmentsFrom } from './segmentsRequest.ts';
import { normaliseStreamUrl, redactStreamUrl, StreamUrlError } from './urls.ts';
import { nowNs } from '../time.ts';

export { s3From, renderFilepath, type S3Defaults, type TemplateValues } from './outputPaths.ts';

/** What validation needs to know about rooms and tracks (the SFU's RoomManager behind it). */
export interface EgressRoomLookup {
  /** The room's sid when the room exists (live or only created). */
  roomSid(name: string): Promise<string | undefined>;
  /** A track published in the live room. */
  track(room: string, trackSid: string): { identity: string; kind: 'audio' | 'video'; mimeType: string } | undefined;
}

const unimplemented = (msg: string) => new ApiError('unimplemented', msg);

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

/** The encoded file (participant / track composite): MP4 (fragmented) or audio-only OGG. */
export function encodedFile(out: EncodedFileOutput, v: TemplateValues, hasVideo: boolean, defaults: S3Defaults): FileSpec {
  if (out.fileType === EncodedFileType.MP3) throw unimplemented('file_type MP3 is not supported; use MP4 (or OGG for audio only)');
  if (out.fileType === EncodedFileType.OGG && hasVideo) throw invalidArgument('file_type OGG holds audio only; use MP4 for audio and video', 'file_type');
  const ogg = out.fileType === EncodedFileType.OGG;
  const ext = ogg ? '.ogg' : '.mp4';
  // Default names carry the egress id ({time} has 1 s resolution: two egresses started together
  // would otherwise get one name).
  const template = out.filepath && !out.filepath.endsWith('/') ? out.filepath : `${out.filepath}{room_name}-{time}-{egress_id}`;
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

/** One file, one stream (many URLs), one segments output, any number of images; at least one output. */
export function checkOutputCounts(o: Outputs): void {
  if (o.fileOutputs.length > 1) throw invalidArgument(`at most one file output is allowed (got ${o.fileOutputs.length})`, 'file_outputs');
  if (o.streamOutputs.length > 1) throw invalidArgument(`at most one stream output is allowed (got ${o.streamOutputs.length}); put several urls in it`, 'stream_outputs');
  if (o.segmentOutputs.length > 1) throw invalidArgument(`at most one segments output is allowed (got ${o.segmentOutputs.length})`, 'segment_outputs');
  if (o.fileOutputs.length + o.streamOutputs.length + o.segmentOutputs.length + o.imageOutputs.length === 0) {
    throw invalidArgument('no outputs: give a file, stream, segments or image output', 'outputs');
  }
}

/** What an encoded egress (participant, track composite, room composite) writes, as JobSpec parts. */
export type EncodedOutputs = Required<Pick<JobSpec, 'encoding'>> & Pick<JobSpec, 'file' | 'stream' | 'segments' | 'images'>;

/**
 * The outputs of one encode: file, stream, HLS segments and images all read the same MPEG-TS.
 * `hasVideo` false: the source can have no picture (OGG allowed, images refused).
 */
export function encodedOutputs(o: Outputs, v: TemplateValues, hasVideo: boolean, options: Options, defaults: S3Defaults): EncodedOutputs {
  checkOutputCounts(o);
  const urls = o.streamOutputs[0] ? streamUrls(o.streamOutputs[0]) : undefined;
  const file = o.fileOutputs[0] ? encodedFile(o.fileOutputs[0], v, hasVideo, defaults) : undefined;
  const segments = o.segmentOutputs[0] ? segmentsFrom(o.segmentOutputs[0], v, defaults) : undefined;
  if (!hasVideo && o.imageOutputs.length > 0) throw invalidArgument('image outputs need video, and this egress has none', 'image_outputs');
  const images = imagesFrom(o.imageOutputs, v, defaults);
  if (!file && !segments && images.length === 0 && (!urls || urls.length === 0)) {
    throw invalidArgument('the stream output has no urls and there is no other output', 'stream_outputs.urls');
  }
  let encoding = encodingFrom(options, urls !== undefined);
  if (segments) encoding = encodingForSegments(encoding, segments, options.case === 'advanced' && options.value.keyFrameInterval > 0);
  return {
    encoding,
    ...(file ? { file } : {}),
    ...(urls ? { stream: { urls } } : {}),
    ...(segments ? { segments } : {}),
    ...(images.length > 0 ? { images } : {}),
  };
}

export interface Validated {
  spec: JobSpec;
  info: EgressInfo;
}

function scrubS3(x: { output: StorageChoice }): void {
  if (x.output.case === 's3') {
    x.output.value.accessKey = '';
    x.output.value.secret = '';
    x.output.value.sessionToken = '';
  }
}

/** Removes stream keys and S3 credentials from the outputs of an echoed request (changes `o`). */
export function scrubOutputs(o: Outputs & { output?: TrackCompositeEgressRequest['output'] }): void {
  const scrubStream = (x: StreamOutput) => {
    x.urls = x.urls.map(redactStreamUrl);
  };
  o.fileOutputs.forEach(scrubS3);
  o.segmentOutputs.forEach(scrubS3);
  o.imageOutputs.forEach(scrubS3);
  o.streamOutputs.forEach(scrubStream);
  if (o.output?.case === 'stream') scrubStream(o.output.value);
  else if (o.output?.case === 'file' || o.output?.case === 'segments') scrubS3(o.output.value);
}

/** The echo of the request in EgressInfo.request, with stream keys and S3 credentials removed. */
function redactRequest<T extends ParticipantEgressRequest | TrackCompositeEgressRequest | TrackEgressRequest>(req: T): T {
  const copy = req.clone() as T;
  if (copy instanceof TrackEgressRequest) {
    if (copy.output.case === 'file') scrubS3(copy.output.value);
    if (copy.output.case === 'websocketUrl') copy.output.value = redactStreamUrl(copy.output.value);
  } else {
    scrubOutputs(copy);
  }
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
    segmentResults: spec.segments ? [segmentsInfoOf(spec.segments)] : [],
    imageResults: (spec.images ?? []).map((im) => new ImagesInfo({ filenamePrefix: im.prefix })),
    // LiveKit fills the deprecated oneof when segments are the only output (pkg/config/output.go).
    ...(spec.segments && !spec.file && !spec.stream && !spec.images ? { result: { case: 'segments' as const, value: segmentsInfoOf(spec.segments) } } : {}),
  });
}

/** The names of a segments output as SegmentsInfo shows them (the object keys of the playlists). */
export function segmentsInfoOf(s: SegmentsSpec): SegmentsInfo {
  const key = (name: string) => (s.dir ? `${s.dir}/${name}` : name);
  return new SegmentsInfo({ playlistName: key(s.playlistName), livePlaylistName: s.livePlaylistName ? key(s.livePlaylistName) : '' });
}

export async function roomOf(lookup: EgressRoomLookup, roomName: string): Promise<string> {
  if (!roomName) throw invalidArgument('room_name is required', 'room_name');
  const sid = await lookup.roomSid(roomName);
  if (!sid) throw notFound(`room '${roomName}' does not exist`);
  return sid;
}

function buildSpec(egressId: string, roomName: string, roomId: string, source: EgressSource, o: Outputs, v: TemplateValues, hasVideo: boolean, options: Options, defaults: S3Defaults): JobSpec {
  return { egressId, roomName, roomId, source, ...encodedOutputs(o, v, hasVideo, options, defaults), createdAt: Date.now() };
}

export async function validateParticipant(req: ParticipantEgressRequest, lookup: EgressRoomLookup, s3: S3Defaults): Promise<Validated> {
  const roomId = await roomOf(lookup, req.roomName);
  if (!req.identity) throw invalidArgument('identity is required', 'identity');
  const egressId = newId('EG_');
  const v: TemplateValues = { roomName: req.roomName, roomId, egressId, identity: req.identity };
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
  const v: TemplateValues = { roomName: req.roomName, roomId, egressId, identity };
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
  const egressId = newId('EG_');
  const v: TemplateValues = { roomName: req.roomName, roomId, egressId, identity: track.identity, trackId: req.trackId, trackType: track.kind, trackSource: '' };
  const template = out.filepath && !out.filepath.endsWith('/') ? out.filepath : `${out.filepath}{room_name}-{track_id}-{time}-{egress_id}`;
  const s3Settings = storageOf(out.output, s3);
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
