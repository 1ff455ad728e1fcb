// Room composite test kit: participants that publish a solid colour and a tone, and the pictures
// of a recording read back (one frame at a time, or every frame with its time) as RGB24.
import { execFileSync } from 'node:child_process';
import type { NodeParticipant } from '../../src/client/node.ts';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';

/**
 * A solid colour (VP8) and a sine tone (Opus). `volume` is an FFmpeg `volume` filter argument: a
 * number, or an expression evaluated per frame (e.g. on `time(0)`, the wall clock in seconds).
 */
export async function publishColour(p: NodeParticipant, colour: string, tone: number, volume: number | string = 0.3): Promise<void> {
  const gain = typeof volume === 'number' ? String(volume) : `'${volume}':eval=frame`;
  await p.publishFromFfmpeg({ kind: 'video', source: 'camera', codec: 'VP8', input: ['-re', '-f', 'lavfi', '-i', `color=c=${colour}:size=320x240:rate=30`] });
  await p.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: ['-re', '-f', 'lavfi', '-i', `sine=frequency=${tone}:sample_rate=48000,volume=${gain}`] });
}

async function rgbFrames(args: string[]): Promise<Buffer> {
  const ff = launchFfmpeg([...args, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { stdout: 'pipe' });
  const chunks: Buffer[] = [];
  ff.stdout!.on('data', (c: Buffer) => chunks.push(c));
  await ff.exited;
  return Buffer.concat(chunks);
}

/** One decoded frame at `atS` seconds from the start of the file, as RGB24 at the file's size. */
export function frameAt(file: string, atS: number): Promise<Buffer> {
  return rgbFrames(['-ss', Math.max(0, atS).toFixed(2), '-i', file, '-frames:v', '1']);
}

/** The presentation time (s) of every video frame of the file, in order. */
export function frameTimes(file: string): number[] {
  return execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'frame=pts_time', '-of', 'csv=p=0', file], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\n')
    .map((l) => Number.parseFloat(l))
    .filter((t) => Number.isFinite(t));
}

/**
 * Every frame of the file scaled to width × height, each with its time from the start of the
 * file (presentation timestamps, the first frame at 0).
 */
export async function framesOf(file: string, width: number, height: number): Promise<{ t: number; rgb: Buffer }[]> {
  const pts = frameTimes(file);
  const raw = await rgbFrames(['-i', file, '-an', '-vf', `scale=${width}:${height}`, '-fps_mode', 'passthrough']);
  const size = width * height * 3;
  const n = Math.min(pts.length, Math.floor(raw.length / size));
  return Array.from({ length: n }, (_, i) => ({ t: pts[i]! - pts[0]!, rgb: raw.subarray(i * size, (i + 1) * size) }));
}

export type Colour = 'red' | 'green' | 'blue' | 'other';

/** The colour of the pixel at (x, y) of an RGB24 picture `width` pixels wide. */
export function colourAt(rgb: Buffer, width: number, x: number, y: number): Colour {
  const i = (Math.round(y) * width + Math.round(x)) * 3;
  const [r, g, b] = [rgb[i]!, rgb[i + 1]!, rgb[i + 2]!];
  if (r > 150 && g < 90 && b < 90) return 'red';
  if (g > 90 && r < 90 && b < 90) return 'green';
  if (b > 150 && r < 90 && g < 90) return 'blue';
  return 'other';
}
