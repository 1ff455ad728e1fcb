// The contract between the gateway and the egress worker process: what an egress job carries from
// the API to a worker (BullMQ job data, JSON in Redis), the messages that steer a running job, and
// the gateway's internal tap API (src/egress/EgressTaps.ts ↔ src/egress/worker/TapClient.ts). The API
// validates and normalises a LiveKit request into a JobSpec once; workers never see protobuf
// request shapes. A leaf: the worker loads it without loading the API (no src/api, src/sfu here).
import { z } from 'zod';
import type { RtpInputStream } from '../media/sdp.ts';
import { S3Schema } from '../storage/settings.ts';
import { CompositeSourceSchema } from './composite/types.ts';

/** Where the media comes from. A composite (room) source is issue 6's; the union is open for it. */
export const SourceSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('participant'), identity: z.string(), screenShare: z.boolean() }),
  z.object({
    kind: z.literal('track_composite'),
    /** The owner of the tracks: a republished track of the same kind by them replaces a gone one. */
    identity: z.string(),
    audioTrackId: z.string().optional(),
    videoTrackId: z.string().optional(),
  }),
  z.object({ kind: z.literal('track'), trackId: z.string(), identity: z.string() }),
  CompositeSourceSchema,
]);
export type EgressSource = z.infer<typeof SourceSchema>;
export type EgressKind = EgressSource['kind'];

export const EncodingSchema = z.object({
  /** Copy the source's H.264 as it is (no preset or PASSTHROUGH asked, and the source is H.264). */
  passthroughAllowed: z.boolean(),
  width: z.number(),
  height: z.number(),
  framerate: z.number(),
  /** kbps */
  videoBitrate: z.number(),
  audioBitrate: z.number(),
  audioFrequency: z.number(),
  /** seconds */
  keyFrameInterval: z.number(),
  profile: z.enum(['baseline', 'main', 'high']),
});
export type EncodingSpec = z.infer<typeof EncodingSchema>;

export const FileSchema = z.object({
  /** Template as requested ({room_name}, {time}, …); the worker renders it at start. */
  filepath: z.string(),
  /** 'auto': from the codec for track egress (.ogg/.webm/.mp4), MP4 otherwise. */
  fileType: z.enum(['auto', 'mp4', 'ogg']),
  s3: S3Schema.optional(),
});
export type FileSpec = z.infer<typeof FileSchema>;

/**
 * HLS: MPEG-TS segments and an EVENT playlist (plus an optional live playlist of the last 5
 * segments), uploaded as each segment completes. Keys are relative to the bucket or output folder.
 */
export const SegmentsSchema = z.object({
  /** Folder of the playlists ('' = top level). */
  dir: z.string(),
  /** File name of the playlist in `dir` (`name.m3u8`). */
  playlistName: z.string(),
  livePlaylistName: z.string().optional(),
  /** Segments are `<dir>/<segmentPrefix>_00000.ts` (INDEX) or `…_<yyyyMMddHHmmssSSS>.ts` (TIMESTAMP, UTC). */
  segmentPrefix: z.string(),
  suffix: z.enum(['index', 'timestamp']),
  /** Seconds. */
  segmentDuration: z.number(),
  s3: S3Schema.optional(),
});
export type SegmentsSpec = z.infer<typeof SegmentsSchema>;

/** Periodic JPEG snapshots of the encoded picture. */
export const ImagesSchema = z.object({
  /** Images are `<prefix>_00000.jpeg` (INDEX), `<prefix>_<yyyyMMddHHmmssSSS>.jpeg` (TIMESTAMP) or `<prefix>.jpeg` (NONE_OVERWRITE). */
  prefix: z.string(),
  suffix: z.enum(['index', 'timestamp', 'none']),
  /** Seconds between snapshots. */
  captureInterval: z.number(),
  /** 0: the encoded picture's (the other side keeps the aspect ratio when only one is given). */
  width: z.number(),
  height: z.number(),
  s3: S3Schema.optional(),
});
export type ImagesSpec = z.infer<typeof ImagesSchema>;

export const JobSpecSchema = z.object({
  egressId: z.string(),
  roomName: z.string(),
  roomId: z.string(),
  source: SourceSchema,
  encoding: EncodingSchema.optional(),
  file: FileSchema.optional(),
  /** Stream destinations with their keys (never put in an EgressInfo: those are redacted). */
  stream: z.object({ urls: z.array(z.string()) }).optional(),
  segments: SegmentsSchema.optional(),
  images: z.array(ImagesSchema).optional(),
  createdAt: z.number(),
});
export type JobSpec = z.infer<typeof JobSpecSchema>;

/** Pub/sub messages to whichever worker runs the job (cross-process control). */
export const ControlSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('stop'), egressId: z.string() }),
  z.object({ type: z.literal('update_stream'), egressId: z.string(), add: z.array(z.string()), remove: z.array(z.string()) }),
  z.object({ type: z.literal('update_layout'), egressId: z.string(), layout: z.string() }),
]);
export type ControlMessage = z.infer<typeof ControlSchema>;

/** Redis names shared by the API and the workers. */
export const EGRESS_QUEUE = 'egress';
export const BULL_PREFIX = 'roomgate:bull';
export const CONTROL_CHANNEL = 'roomgate:egress:control';

/** What a running job reports through job.updateProgress (and a stalled-job recovery reads back). */
export interface JobProgress {
  phase: 'attaching' | 'active' | 'ending' | 'uploading';
  /** Host and local path of the file being written, so a recovery on that host can save it. */
  host?: string;
  localFile?: string;
  startedAt?: number;
  bytesOut?: number;
  /** Staging folders of the HLS and image outputs on `host` (what is left there after a kill). */
  segmentsDir?: string;
  imagesDirs?: string[];
}

/** The gateway's internal egress API (tap sessions and room snapshots) is served under this path. */
export const EGRESS_INTERNAL_PATH = '/internal/egress';

/** POST <EGRESS_INTERNAL_PATH>/open: a tap session on the tracks `source` records now. */
export const OpenSchema = z.object({ egressId: z.string(), room: z.string(), source: SourceSchema });
/** POST <EGRESS_INTERNAL_PATH>/room/<room>: a room composite's view of its room. */
export const SnapshotSchema = z.object({ egressId: z.string(), roomId: z.string().optional() });

/** How cached pictures of a server-fed track are stamped (src/egress/relayFeed.ts). */
export type ReplayMode = 'preroll' | 'live';

/** POST <EGRESS_INTERNAL_PATH>/<session>/connect: send each track's RTP to the worker's ports. */
export const ConnectSchema = z.object({
  targets: z.array(z.object({ trackSid: z.string(), ip: z.string(), port: z.int().min(1).max(65535), rtcpPort: z.int().min(1).max(65535) })),
  replay: z.enum(['preroll', 'live']).default('live'),
});
export type TapTarget = z.infer<typeof ConnectSchema>['targets'][number];

export interface TapTrack {
  trackSid: string;
  identity: string;
  kind: 'audio' | 'video';
  /** The codec as the receiver's SDP must describe it (ports are the worker's own). */
  codec: Omit<RtpInputStream, 'port' | 'rtcpPort'>;
  /** Where this track's RTP (and RTCP) comes from: the worker accepts packets from there only. */
  from: { ip: string; port: number; rtcpPort: number };
  /** Sent from the keyframe cache: starts at once, and a keyframe request does nothing. */
  cached: boolean;
}

/** The answer to `open`. */
export type OpenResult =
  | { state: 'ready'; sessionId: string; version: number; tracks: TapTrack[] }
  | { state: 'waiting'; reason: string }
  | { state: 'ended'; reason: string };

/** The answer to POST <EGRESS_INTERNAL_PATH>/<session>/keepalive; `gone`: a consumed track was unpublished. */
export interface KeepaliveResult {
  version: number;
  gone: boolean;
}
