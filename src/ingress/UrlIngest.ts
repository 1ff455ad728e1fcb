// URL input: FFmpeg pulls an HTTP(S) file or HLS playlist, or an SRT stream, and publishes it into
// the room like an RTMP stream. It starts when the ingress is created and ends COMPLETE at the end
// of the media (ERROR when the source fails). Passthrough when the source is H.264 without
// B-frames and transcoding was not asked for; anything else is re-encoded.
import { IngressState_Status, type IngressInfo } from '@livekit/protocol';
import { probeMedia, type ProbedMedia } from '../media/ffprobe.ts';
import type { Logger } from '../logger.ts';
import { IngestPipeline, type IngestPlan } from './IngestPipeline.ts';
import type { IngressSessions } from './IngressSessions.ts';
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

export class UrlIngest {
  readonly #sessions: IngressSessions;
  readonly #log: Logger;
  readonly #running = new Map<string, Promise<void>>();

  constructor(sessions: IngressSessions, log: Logger) {
    this.#sessions = sessions;
    this.#log = log;
  }

  /** Starts pulling; resolves when the session has ended (tests), errors land in the state. */
  start(info: IngressInfo): Promise<void> {
    const run = this.#run(info).finally(() => this.#running.delete(info.ingressId));
    this.#running.set(info.ingressId, run);
    return run;
  }

  async #run(info: IngressInfo): Promise<void> {
    const session = this.#sessions.start(info, 'url');
    const source = redact(info.url);
    // Credentials or tokens in the URL stay out of logs and the state's error text.
    const hide = (text: string) => (source === info.url ? text : text.split(info.url).join(source));
    const ended = new Promise<void>((resolve) => session.once('end', () => resolve()));
    const abort = new AbortController();
    void ended.then(() => abort.abort());
    let media: ProbedMedia;
    try {
      media = await probeMedia(info.url, 15_000, abort.signal);
    } catch (err) {
      session.end(IngressState_Status.ENDPOINT_ERROR, hide(`cannot read ${source}: ${(err as Error).message}`));
      return;
    }
    if (session.ended) return;
    if (!media.video && !media.audio) {
      session.end(IngressState_Status.ENDPOINT_ERROR, `${source} has no audio or video stream`);
      return;
    }
    const plan = planForProbe(media, session.info, info.url, session.log);
    if (source !== info.url) plan.secret = info.url;
    let pipeline: IngestPipeline;
    try {
      pipeline = await IngestPipeline.start(session, plan);
    } catch (err) {
      session.end(IngressState_Status.ENDPOINT_ERROR, hide(`could not start the ingest pipeline: ${(err as Error).message}`));
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
      else session.end(IngressState_Status.ENDPOINT_ERROR, error);
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
