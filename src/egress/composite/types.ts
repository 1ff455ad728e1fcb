// The room composite's shared vocabulary: what the gateway tells a worker about a room right now
// (RoomSnapshot) and what a layout template makes of it (LayoutPlan). Plain data: it crosses HTTP
// and Redis as JSON.
import { z } from 'zod';

export const TrackSourceNameSchema = z.enum(['camera', 'microphone', 'screen_share', 'screen_share_audio', 'unknown']);
export type TrackSourceName = z.infer<typeof TrackSourceNameSchema>;

export const SnapshotTrackSchema = z.object({
  sid: z.string(),
  kind: z.enum(['audio', 'video']),
  source: TrackSourceNameSchema,
  muted: z.boolean(),
  /** RTP arrived within the last second or so: a paused or silent producer would stall a filter graph. */
  flowing: z.boolean(),
});
export type SnapshotTrack = z.infer<typeof SnapshotTrackSchema>;

export const SnapshotParticipantSchema = z.object({
  identity: z.string(),
  name: z.string(),
  /** Join order (ms): keeps tiles where they were when others come and go. */
  joinedAt: z.number(),
  tracks: z.array(SnapshotTrackSchema),
});
export type SnapshotParticipant = z.infer<typeof SnapshotParticipantSchema>;

export const RoomSnapshotSchema = z.object({
  /** 'live': media here; 'idle': created, nobody in it; 'gone': deleted or never existed. */
  state: z.enum(['live', 'idle', 'gone']),
  participants: z.array(SnapshotParticipantSchema),
  /** Identities, loudest first (the room's AudioLevelObserver). */
  speakers: z.array(z.string()),
});
export type RoomSnapshot = z.infer<typeof RoomSnapshotSchema>;

/** A rectangle of the canvas and what it shows. */
export interface Tile {
  x: number;
  y: number;
  w: number;
  h: number;
  identity: string;
  /** The video track shown; absent: a name card (participant without video). */
  trackSid?: string;
  /** Text of the name card (and of the label under a video, when a template asks for one). */
  label: string;
  /** 'cover' crops to fill the tile (cameras); 'contain' shows everything (screen shares). */
  fit: 'cover' | 'contain';
}

export interface LayoutPlan {
  /** Canvas colour, FFmpeg syntax (e.g. 0x101010). */
  background: string;
  /** Colour of name cards. */
  cardColor: string;
  /** Colour of the text on name cards. */
  textColor: string;
  /** Drawn in order: later tiles cover earlier ones. */
  tiles: Tile[];
}

export type Theme = 'dark' | 'light';

export interface LayoutInput {
  participants: SnapshotParticipant[];
  /** Identities, loudest first; the first one is the active speaker. */
  speakers: string[];
  width: number;
  height: number;
  theme: Theme;
}

/** What a module in templates/layouts/ exports as default. */
export interface LayoutTemplate {
  /** Most video tiles the layout ever shows (bounds the compositor's inputs). */
  maxTiles: number;
  plan(input: LayoutInput): LayoutPlan;
}

export const CompositeSourceSchema = z.object({
  kind: z.literal('room_composite'),
  layout: z.string(),
  audioOnly: z.boolean(),
  videoOnly: z.boolean(),
  /** The tracks one compositor run consumes (set by the worker per run; empty in the job). */
  trackSids: z.array(z.string()),
});
export type CompositeSource = z.infer<typeof CompositeSourceSchema>;
