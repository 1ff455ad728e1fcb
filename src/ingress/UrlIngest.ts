// URL input: FFmpeg pulls an HTTP(S) file or HLS playlist, or an SRT stream, and publishes it into
// the room like an RTMP stream. It starts when the ingress is created and ends COMPLETE at the end
// of the media (ERROR when the source fails). Passthrough when the source is H.264 without
// B-frames and transcoding was not asked for; anything else is re-encoded.
import { IngressState_Status, type IngressInfo } from '@livekit/protocol';
import { probeMedia, type ProbedMedia } from '../media/ffprobe.ts';
import type { Logger } from '../logger.ts';
import { IngestPipeline, type IngestPlan } from './IngestPipeline.ts';
import type { IngressSessions } from './IngressSessions.ts';
import { UrlRefusedError, type UrlPolicy } from './urlPolicy.ts';
import { sameSizeLayer, videoLayers } from './videoLayers.ts';

const AUDIO_MIME: Record<string, string> = { aac: 'audio/aac', opus: 'audio/opus', mp3: 'audio/mpeg', vorbis: 'audio/vorbis' };

export function planForProbe(media: ProbedMedia, info: IngressInfo, url: string, log: Logger): IngestPlan {
  // Files are paced at their own rate; a live SRT source paces itself.
  const live = url.startsWith('srt:');
  const plan: IngestPlan = { input: [...(live ? [] : ['-re']), '-i', url], stdin: false };
  const v = media.video;
  if (v) {
    plan.width = v.width;
    plan.height = v.height;
    if (info.enableTranscoding) plan.video = videoLayers(info.video, v.height);
    else if (v.codec === 'h264' && !v.bFrames) plan.video = 'copy';
    else {
      log.warn({ codec: v.codec, bFrames: v.bFrames }, 'source video cannot be passed through: re-encoding it to H.264');
      plan.video = [sameSizeLayer(v.width, v.height, v.fps)];
    }
  }
  if (media.audio) plan.audio = media.audio.codec === 'opus' ? 'copy' : 'opus';
  return plan;
}

export interface UrlIngestOptions {
  /** Where sources may be fetched from (ingress.url_allow). */
  policy: UrlPolicy;
  /** The checking proxy every HTTP(S) fetch goes through. */
  proxy: { url: string };
  /** Concurrent pulls (ingress.url_max_sessions); CreateIngress refuses more. */
  maxSessions: number;
}

/** What the ingress state says when a source cannot be used; the reason goes to the server log. */
export const URL_OPEN_ERROR = 'could not open the input';
export const URL_READ_ERROR = 'the input failed while it was being read';

export class UrlIngest {
  readonly #sessions: IngressSessions;
  readonly #log: Logger;
  readonly #opts: UrlIngestOptions;
  readonly #running = new Map<string, Promise<void>>();

  constructor(sessions: IngressSessions, log: Logger, opts: UrlIngestOptions) {
    this.#sessions = sessions;
    this.#log = log;
    this.#opts = opts;
  }

  /** Whether one more pull may start now (each holds an ffprobe, then an FFmpeg). */
  get full(): boolean {
    return this.#running.size >= this.#opts.maxSessions;
  }

  /** Starts pulling; resolves when the session has ended (tests), errors land in the state. */
  start(info: IngressInfo): Promise<void> {
    const run = this.#run(info).finally(() => this.#running.delete(info.ingressId));
    this.#running.set(info.ingressId, run);
    return run;
  }

  /**
   * The URL FFmpeg reads and its input options: HTTP(S) through the checking proxy; SRT (UDP, no
   * proxy) with its host replaced by the checked address.
   */
  async #target(url: string): Promise<{ url: string; options: string[] }> {
    const u = new URL(url);
    if (u.protocol === 'http:' || u.protocol === 'https:') return { url, options: ['-http_proxy', this.#opts.proxy.url] };
    const address = await this.#opts.policy.resolve(u.hostname);
    u.hostname = address.includes(':') ? `[${address}]` : address;
    return { url: u.toString(), options: [] };
  }

  async #run(info: IngressInfo): Promise<void> {
    const session = this.#sessions.start(info, 'url');
    const source = redact(info.url);
    const abort = new AbortController();
    const ended = new Promise<void>((resolve) =>
      session.once('end', () => {
        abort.abort();
        resolve();
      }),
    );
    // The caller chose the URL: what answered (refused, 404, 403, a banner) is not theirs to learn.
    const fail = (why: string, detail: string, text = URL_OPEN_ERROR) => {
      session.log.warn({ source, why, detail: detail.split(info.url).join(source).slice(0, 500) }, 'URL ingress failed');
      session.end(IngressState_Status.ENDPOINT_ERROR, text);
    };
    let target: { url: string; options: string[] };
    let media: ProbedMedia;
    try {
      target = await this.#target(info.url);
      media = await probeMedia(target.url, 15_000, abort.signal, target.options);
    } catch (err) {
      if (!session.ended) fail(err instanceof UrlRefusedError ? 'target refused' : 'probe failed', (err as Error).message);
      return;
    }
    if (session.ended) return;
    if (!media.video && !media.audio) {
      session.end(IngressState_Status.ENDPOINT_ERROR, `${source} has no audio or video stream`);
      return;
    }
    const plan = planForProbe(media, session.info, target.url, session.log);
    plan.input = [...target.options, ...plan.input];
    if (redact(target.url) !== target.url) plan.secret = target.url;
    let pipeline: IngestPipeline;
    try {
      pipeline = await IngestPipeline.start(session, plan);
    } catch (err) {
      fail('pipeline did not start', (err as Error).message);
      return;
    }
    session.updateInput({
      ...(media.video
        ? { video: { mimeType: `video/${media.video.codec}`, width: media.video.width, height: media.video.height, framerate: media.video.fps, averageBitrate: media.video.bitrate } }
        : {}),
      ...(media.audio
        ? { audio: { mimeType: AUDIO_MIME[media.audio.codec] ?? `audio/${media.audio.codec}`, channels: media.audio.channels, sampleRate: media.audio.sampleRate, averageBitrate: media.audio.bitrate } }
        : {}),
    });
    pipeline.once('exit', (code, error) => {
      if (code === 0) session.end(IngressState_Status.ENDPOINT_COMPLETE, undefined, 'end of the source');
      else fail('FFmpeg failed', error ?? `exit ${code}`, URL_READ_ERROR);
    });
    await ended; // end of the source, failure, DeleteIngress, shutdown or the participant removed
    await pipeline.stop();
  }

  /** Ends the running pulls (they are not resumed after a restart: URL ingress runs once). */
  async close(): Promise<void> {
    for (const id of this.#running.keys()) this.#sessions.stop(id, IngressState_Status.ENDPOINT_INACTIVE, 'shutdown');
    await Promise.all(this.#running.values());
    this.#log.debug('URL ingress stopped');
  }
}

/** URLs may carry credentials or tokens in their query: logs and states show scheme, host and path. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
