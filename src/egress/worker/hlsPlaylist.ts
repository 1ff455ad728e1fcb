// HLS playlists as the HLS output needs them. FFmpeg's own playlist (in the staging folder) says
// which segments are finished; the playlists we publish are rendered from the segments already
// stored, so a published playlist never names a segment that is not there yet (a killed worker
// leaves a playlist that plays to its last line).

export interface HlsSegment {
  /** As the playlist names it (relative to the playlist). */
  uri: string;
  /** Seconds. */
  duration: number;
  /** Wall clock of the segment's first frame (ms), from EXT-X-PROGRAM-DATE-TIME. */
  programDateTime?: number;
}

export interface ParsedPlaylist {
  segments: HlsSegment[];
  /** #EXT-X-ENDLIST: the writer finished. */
  ended: boolean;
}

/** `2024-05-01T12:00:00.123+0000` (FFmpeg) or `…Z` / `…+00:00` (ISO 8601). */
export function parseProgramDateTime(s: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$/.exec(s.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, frac, tz] = m;
  const ms = frac ? Math.round(Number(`0.${frac}`) * 1000) : 0;
  let t = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec), ms);
  if (tz && tz !== 'Z') {
    const sign = tz.startsWith('-') ? -1 : 1;
    const digits = tz.slice(1).replace(':', '');
    t -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60_000;
  }
  return t;
}

/** The media segments of a playlist, in order; tags before a URI belong to it (in any order). */
export function parsePlaylist(text: string): ParsedPlaylist {
  const segments: HlsSegment[] = [];
  let duration: number | undefined;
  let pdt: number | undefined;
  let ended = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#EXTINF:')) {
      const d = Number.parseFloat(line.slice('#EXTINF:'.length));
      duration = Number.isFinite(d) && d >= 0 ? d : undefined;
    } else if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) {
      pdt = parseProgramDateTime(line.slice('#EXT-X-PROGRAM-DATE-TIME:'.length));
    } else if (line === '#EXT-X-ENDLIST') {
      ended = true;
    } else if (!line.startsWith('#')) {
      if (duration !== undefined) segments.push({ uri: line, duration, ...(pdt !== undefined ? { programDateTime: pdt } : {}) });
      duration = undefined;
      pdt = undefined;
    }
  }
  return { segments, ended };
}

export interface RenderOptions {
  /** The segment duration asked for (seconds): the target duration never goes below it. */
  segmentDuration: number;
  /** EVENT: the whole recording (segments only get added). Live: a sliding window. */
  kind: 'event' | 'live';
  /** Append #EXT-X-ENDLIST (the recording is over). */
  ended: boolean;
}

/** Segments a live playlist keeps (LiveKit egress: fixed at 5). */
export const LIVE_WINDOW = 5;

function isoMs(t: number): string {
  return new Date(t).toISOString().replace('Z', '+00:00');
}

/** A playlist of `segments` (all stored ones, in order; a live playlist keeps the last LIVE_WINDOW). */
export function renderPlaylist(segments: HlsSegment[], o: RenderOptions): string {
  const first = o.kind === 'live' ? Math.max(0, segments.length - LIVE_WINDOW) : 0;
  const shown = segments.slice(first);
  // Every segment's rounded duration must fit the target (RFC 8216 4.3.3.1); a segment runs past
  // the asked duration up to the next keyframe.
  const target = Math.max(Math.ceil(o.segmentDuration), ...segments.map((s) => Math.round(s.duration)));
  const lines = ['#EXTM3U', '#EXT-X-VERSION:3', `#EXT-X-TARGETDURATION:${target}`, `#EXT-X-MEDIA-SEQUENCE:${first}`];
  if (o.kind === 'event') lines.push('#EXT-X-PLAYLIST-TYPE:EVENT');
  for (const s of shown) {
    if (s.programDateTime !== undefined) lines.push(`#EXT-X-PROGRAM-DATE-TIME:${isoMs(s.programDateTime)}`);
    lines.push(`#EXTINF:${s.duration.toFixed(3)},`, s.uri);
  }
  if (o.ended) lines.push('#EXT-X-ENDLIST');
  return `${lines.join('\n')}\n`;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** yyyyMMddHHmmssSSS in UTC (LiveKit's TIMESTAMP suffix). */
export function timestampSuffix(t: number): string {
  const d = new Date(t);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}${pad(d.getUTCMilliseconds(), 3)}`;
}

/** The stored name of segment `index` (relative to the playlist's folder). */
export function segmentName(prefix: string, index: number, suffix: 'index' | 'timestamp', startMs: number | undefined): string {
  if (suffix === 'timestamp' && startMs !== undefined) return `${prefix}_${timestampSuffix(startMs)}.ts`;
  return `${prefix}_${pad(index, 5)}.ts`;
}

/** The stored name of image `index` (relative to the bucket or output folder). */
export function imageName(prefix: string, index: number, suffix: 'index' | 'timestamp' | 'none', takenMs: number): string {
  if (suffix === 'none') return `${prefix}.jpeg`;
  if (suffix === 'timestamp') return `${prefix}_${timestampSuffix(takenMs)}.jpeg`;
  return `${prefix}_${pad(index, 5)}.jpeg`;
}
