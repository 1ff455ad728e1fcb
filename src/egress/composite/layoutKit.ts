// Helpers for layout templates (templates/layouts/*.ts): themes, which video a participant shows,
// and grid geometry. A custom template imports these or does its own arithmetic.
import type { LayoutPlan, SnapshotParticipant, SnapshotTrack, Theme, Tile } from './types.ts';

export type { LayoutInput, LayoutPlan, LayoutTemplate, SnapshotParticipant, Tile } from './types.ts';

export function themeColors(theme: Theme): Omit<LayoutPlan, 'tiles'> {
  return theme === 'light'
    ? { background: '0xf1f3f4', cardColor: '0xc8ccd2', textColor: '0x202124' }
    : { background: '0x111114', cardColor: '0x2c2e33', textColor: '0xf1f3f4' };
}

/** The participant's camera (or other non-screen video) that is sending, if any. */
export function cameraOf(p: SnapshotParticipant): SnapshotTrack | undefined {
  return p.tracks.find((t) => t.kind === 'video' && t.flowing && t.source !== 'screen_share');
}

export function screenShareOf(p: SnapshotParticipant): SnapshotTrack | undefined {
  return p.tracks.find((t) => t.kind === 'video' && t.flowing && t.source === 'screen_share');
}

/** The first screen share in the room (it takes the main area). */
export function firstScreenShare(ps: SnapshotParticipant[]): { participant: SnapshotParticipant; track: SnapshotTrack } | undefined {
  for (const participant of ps) {
    const track = screenShareOf(participant);
    if (track) return { participant, track };
  }
  return undefined;
}

const even = (n: number) => Math.max(2, Math.floor(n / 2) * 2);

/** A participant's tile: its camera when it sends one, a name card otherwise. */
export function participantTile(p: SnapshotParticipant, r: { x: number; y: number; w: number; h: number }): Tile {
  const cam = cameraOf(p);
  return { x: even(r.x), y: even(r.y), w: even(r.w), h: even(r.h), identity: p.identity, label: p.name, fit: 'cover', ...(cam ? { trackSid: cam.sid } : {}) };
}

/** Columns × rows for n tiles: 1, 2 (side by side), 4 (2×2), 9 (3×3), 16 (4×4). */
export function gridShape(n: number): { cols: number; rows: number } {
  if (n <= 1) return { cols: 1, rows: 1 };
  if (n === 2) return { cols: 2, rows: 1 };
  if (n <= 4) return { cols: 2, rows: 2 };
  if (n <= 9) return { cols: 3, rows: 3 };
  return { cols: 4, rows: 4 };
}

/**
 * n cells of 16:9 (or the area's own aspect for one tile) filling an area, centred, with a gap.
 * Cells go left to right, top to bottom.
 */
export function gridCells(n: number, area: { x: number; y: number; w: number; h: number }, gap = 8): { x: number; y: number; w: number; h: number }[] {
  if (n <= 0) return [];
  const { cols, rows } = gridShape(n);
  let cw = (area.w - gap * (cols + 1)) / cols;
  let ch = (area.h - gap * (rows + 1)) / rows;
  if (n > 1) {
    // Keep 16:9 cells; the spare room goes around the grid.
    if (cw / ch > 16 / 9) cw = (ch * 16) / 9;
    else ch = (cw * 9) / 16;
  }
  const usedRows = Math.ceil(n / cols);
  const gridW = cols * cw + (cols - 1) * gap;
  const gridH = usedRows * ch + (usedRows - 1) * gap;
  const x0 = area.x + (area.w - gridW) / 2;
  const y0 = area.y + (area.h - gridH) / 2;
  const cells = [];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / cols);
    const inRow = row === usedRows - 1 ? n - row * cols : cols;
    // A short last row is centred too.
    const rowX0 = x0 + ((cols - inRow) * (cw + gap)) / 2;
    cells.push({ x: Math.round(rowX0 + (i % cols) * (cw + gap)), y: Math.round(y0 + row * (ch + gap)), w: Math.round(cw), h: Math.round(ch) });
  }
  return cells;
}

/** Who is shown first when there are more participants than tiles: speakers, then join order. */
export function bySpeaking(ps: SnapshotParticipant[], speakers: string[]): SnapshotParticipant[] {
  const rank = (p: SnapshotParticipant) => {
    const i = speakers.indexOf(p.identity);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return [...ps].sort((a, b) => rank(a) - rank(b) || a.joinedAt - b.joinedAt);
}

/**
 * Speaker arrangement (also used by grid while a screen is shared): a main tile on the left and
 * a strip of up to five 16:9 tiles on the right; one participant alone fills the canvas.
 */
export function speakerTiles(main: Tile | undefined, others: SnapshotParticipant[], width: number, height: number): Tile[] {
  if (!main) return [];
  if (others.length === 0) return [{ ...main, x: 0, y: 0, w: even(width), h: even(height) }];
  const stripW = even(width / 5);
  const tileH = even((stripW * 9) / 16);
  const shown = others.slice(0, Math.max(1, Math.floor(height / (tileH + 4))));
  const top = (height - shown.length * (tileH + 4)) / 2;
  return [
    { ...main, x: 0, y: 0, w: even(width - stripW), h: even(height) },
    ...shown.map((p, i) => participantTile(p, { x: width - stripW, y: top + i * (tileH + 4), w: stripW, h: tileH })),
  ];
}
