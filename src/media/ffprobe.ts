// What a media URL or file carries, from ffprobe: the URL ingress decides passthrough or transcode
// from it before the first packet is sent.
import { execFile } from 'node:child_process';

export interface ProbedMedia {
  video?: { codec: string; width: number; height: number; fps: number; bFrames: boolean; bitrate: number };
  audio?: { codec: string; channels: number; sampleRate: number; bitrate: number };
  /** Seconds; 0 for live sources. */
  duration: number;
}

interface FfprobeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  has_b_frames?: number;
  channels?: number;
  sample_rate?: string;
  bit_rate?: string;
}

function rate(r: string | undefined): number {
  const [n, d] = (r ?? '0/1').split('/').map(Number);
  return n && d ? Math.round((n / d) * 100) / 100 : 0;
}

/** Probes `url` (at most timeoutMs; `inputOptions` go before it); rejects with ffprobe's own error line. */
export function probeMedia(url: string, timeoutMs = 15_000, signal?: AbortSignal, inputOptions: string[] = []): Promise<ProbedMedia> {
  const args = ['-v', 'error', '-rw_timeout', String(timeoutMs * 1000), ...inputOptions, '-show_streams', '-show_format', '-of', 'json', url];
  return new Promise((resolve, reject) => {
    execFile('ffprobe', args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, ...(signal ? { signal } : {}) }, (err, stdout, stderr) => {
      if (err) {
        if (signal?.aborted) return reject(new Error('probe cancelled'));
        const line = stderr.split('\n').map((l) => l.trim()).filter(Boolean).pop();
        return reject(new Error(line ?? (err.killed ? `no answer within ${timeoutMs / 1000} s` : err.message)));
      }
      try {
        const out = JSON.parse(stdout) as { streams?: FfprobeStream[]; format?: { duration?: string } };
        const v = out.streams?.find((s) => s.codec_type === 'video');
        const a = out.streams?.find((s) => s.codec_type === 'audio');
        resolve({
          ...(v
            ? {
                video: {
                  codec: v.codec_name ?? 'unknown',
                  width: v.width ?? 0,
                  height: v.height ?? 0,
                  fps: rate(v.avg_frame_rate) || rate(v.r_frame_rate),
                  bFrames: (v.has_b_frames ?? 0) > 0,
                  bitrate: Number(v.bit_rate ?? 0),
                },
              }
            : {}),
          ...(a
            ? { audio: { codec: a.codec_name ?? 'unknown', channels: a.channels ?? 0, sampleRate: Number(a.sample_rate ?? 0), bitrate: Number(a.bit_rate ?? 0) } }
            : {}),
          duration: Number(out.format?.duration ?? 0) || 0,
        });
      } catch (e) {
        reject(new Error(`unreadable ffprobe output: ${(e as Error).message}`));
      }
    });
  });
}
