// HLS recordings read back as a player would: ffprobe, a playlist and its segments fetched from S3,
// the whole recording decoded. Shared by the segment tests and the fault tests.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parsePlaylist } from '../../src/egress/worker/hlsPlaylist.ts';
import type { TestS3 } from './egress.ts';

export interface Probed {
  streams: { codec_type: string; codec_name: string; width?: number; height?: number; nb_read_frames?: string }[];
  format: { duration?: string };
}

export function ffprobe(args: string[]): Probed {
  const res = spawnSync('ffprobe', ['-v', 'error', ...args, '-show_streams', '-show_format', '-of', 'json'], { encoding: 'utf8', timeout: 30_000 });
  if (res.status !== 0) throw new Error(`ffprobe failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as Probed;
}

/**
 * Downloads the S3 playlist at `key` and every segment it names into a local folder (same layout)
 * and checks each named segment is in S3. Returns the local playlist and what it lists.
 */
export async function download(s3: TestS3, key: string): Promise<{ local: string; text: string; segments: { uri: string; duration: number }[]; ended: boolean }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-hls-'));
  const text = (await s3.get(key)).toString('utf8');
  const local = path.join(dir, path.basename(key));
  fs.writeFileSync(local, text);
  const { segments, ended } = parsePlaylist(text);
  const folder = path.posix.dirname(key);
  for (const s of segments) {
    const body = await s3.get(`${folder}/${s.uri}`); // throws when a listed segment is not in S3
    fs.mkdirSync(path.dirname(path.join(dir, s.uri)), { recursive: true });
    fs.writeFileSync(path.join(dir, s.uri), body);
  }
  return { local, text, segments, ended };
}

/** The whole recording decoded: the playlist as a player reads it once it stops growing. */
export function decodeAll(playlist: string): { video: number; audio: boolean; duration: number; width?: number; height?: number } {
  const text = fs.readFileSync(playlist, 'utf8');
  const ended = text.includes('#EXT-X-ENDLIST') ? playlist : playlist.replace(/\.m3u8$/, '.ended.m3u8');
  if (ended !== playlist) fs.writeFileSync(ended, `${text}#EXT-X-ENDLIST\n`);
  const p = ffprobe(['-count_frames', ended]);
  const v = p.streams.find((s) => s.codec_type === 'video');
  return {
    video: Number(v?.nb_read_frames ?? 0),
    audio: p.streams.some((s) => s.codec_name === 'aac'),
    duration: Number(p.format.duration ?? 0),
    ...(v?.width ? { width: v.width, height: v.height! } : {}),
  };
}

export const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
