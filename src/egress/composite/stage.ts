// What one compositor run can show without being replaced: its "stage". A run draws its name
// cards into the canvas once, mixes a set of audio tracks, and has a fixed set of video slots
// (rectangles). Each slot may hold one of several tracks (decoded anyway), and an FFmpeg
// `streamselect` in front of the slot's scaler picks which one it shows. A later plan with the same
// cards, audio and slots, whose slots hold tracks the stage has ready, is shown by switching those
// selectors (one filter command per changed slot, all applied on one frame): no new FFmpeg, no
// probing, no wait for keyframes, and no more scaling than a run without choices. A run is built for its plan and for the plans its layout makes when someone else
// speaks, so an active-speaker change costs a command, not a handover (docs/composite.md).
// Pure geometry, no I/O.
import type { LayoutPlan, Tile } from './types.ts';

export interface Slot {
  x: number;
  y: number;
  w: number;
  h: number;
  fit: Tile['fit'];
  /** The tracks this slot can show; the first is the one shown at start. */
  candidates: string[];
}

export interface Stage {
  /** In drawing order (later ones cover earlier ones). */
  slots: Slot[];
  /** Colours and name cards, as a comparable key. */
  backdrop: string;
  videoSids: string[];
  audioSids: string[];
}

/** For each slot, the index into its candidates that it shows. */
export type Selection = number[];

/** Each candidate costs a frame reference per frame; a bound all the same on what one run carries. */
const MAX_CANDIDATES = 32;

type VideoTile = Tile & { trackSid: string };

function videoTiles(plan: LayoutPlan, videoSids: string[]): VideoTile[] {
  return plan.tiles.filter((t): t is VideoTile => t.trackSid !== undefined && videoSids.includes(t.trackSid));
}

/** Colours and name cards (tiles without one of the run's videos): drawn into the canvas at start. */
function backdropOf(plan: LayoutPlan, videoSids: string[]): string {
  const cards = plan.tiles.filter((t) => !t.trackSid || !videoSids.includes(t.trackSid)).map((t) => [t.x, t.y, t.w, t.h, t.identity, t.label]);
  return JSON.stringify([plan.background, plan.cardColor, plan.textColor, cards]);
}

const sameRect = (a: { x: number; y: number; w: number; h: number; fit: Tile['fit'] }, b: typeof a) =>
  a.x === b.x && a.y === b.y && a.w === b.w && a.h === b.h && a.fit === b.fit;

/** The plan's track for each slot, or undefined when its video tiles are not exactly the slots. */
function tracksBySlot(slots: readonly Omit<Slot, 'candidates'>[], plan: LayoutPlan, videoSids: string[]): string[] | undefined {
  const tiles = videoTiles(plan, videoSids);
  // Every tile with a track must be one of this run's videos (or the plan needs another run).
  if (tiles.length !== plan.tiles.filter((t) => t.trackSid).length || tiles.length !== slots.length) return undefined;
  const tracks: string[] = [];
  for (const s of slots) {
    const t = tiles.find((tile) => sameRect(tile, s));
    if (!t) return undefined;
    tracks.push(t.trackSid);
  }
  return tracks;
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && a.every((x) => b.includes(x));


/**
 * The stage of a run that shows `plan` first and may switch to any of `variants` in place (those
 * with other cards, colours, slots or videos are left out).
 */
export function stageFor(plan: LayoutPlan, variants: LayoutPlan[], videoSids: string[], audioSids: string[]): Stage {
  const slots: Slot[] = videoTiles(plan, videoSids).map((t) => ({ x: t.x, y: t.y, w: t.w, h: t.h, fit: t.fit, candidates: [t.trackSid] }));
  const backdrop = backdropOf(plan, videoSids);
  for (const v of variants) {
    if (backdropOf(v, videoSids) !== backdrop) continue;
    const tracks = tracksBySlot(slots, v, videoSids);
    if (!tracks) continue;
    const grown = slots.map((s, i) => (s.candidates.includes(tracks[i]!) ? s : { ...s, candidates: [...s.candidates, tracks[i]!] }));
    if (grown.reduce((n, sl) => n + sl.candidates.length, 0) > MAX_CANDIDATES) continue;
    slots.splice(0, slots.length, ...grown);
  }
  return { slots, backdrop, videoSids, audioSids };
}

/** What each slot shows for `plan`, or undefined when the stage cannot show it in place. */
export function selectionFor(stage: Stage, plan: LayoutPlan, videoSids: string[], audioSids: string[]): Selection | undefined {
  if (!sameSet(videoSids, stage.videoSids) || !sameSet(audioSids, stage.audioSids)) return undefined;
  if (backdropOf(plan, videoSids) !== stage.backdrop) return undefined;
  const tracks = tracksBySlot(stage.slots, plan, videoSids);
  if (!tracks) return undefined;
  const selection = tracks.map((t, i) => stage.slots[i]!.candidates.indexOf(t));
  return selection.every((k) => k >= 0) ? selection : undefined;
}
