// Track egress: one FFmpeg copying the track's codec into its file (no encoder, no sinks).
import { launchFfmpeg, type FfmpegProcess } from '../../../media/ffmpeg.ts';
import { trackToFile } from '../ffmpegArgs.ts';
import { TapSession } from '../tapSession.ts';
import type { RunContext, SourceStrategy } from './types.ts';

const TRACK_RTP_TIMEOUT_S = 30;
/** A copy waits long for a keyframe rather than record undecodable pictures (tapInput.ts). */
const TRACK_GATE = { holdAudioMs: 0, gateTimeoutMs: (TRACK_RTP_TIMEOUT_S - 5) * 1000 };

export class TrackSource implements SourceStrategy {
  readonly #c: RunContext;

  constructor(c: RunContext) {
    this.#c = c;
  }

  async run(): Promise<void> {
    const c = this.#c;
    const file = c.outputs.useFile();
    const session = await TapSession.attach(c);
    if (!session) return;
    if ('ended' in session) return c.ended(session.ended);
    let ffmpeg: FfmpegProcess | undefined;
    try {
      const { sdpFile } = await session.plumb(session.tracks, 'track', TRACK_GATE);
      ffmpeg = launchFfmpeg(['-progress', 'pipe:1', '-stats_period', '0.25', ...trackToFile(sdpFile, file, TRACK_RTP_TIMEOUT_S)], { log: c.log, stdout: 'pipe' });
      // ACTIVE once FFmpeg writes media; the recording started when the RTP did (connect).
      ffmpeg.stdout!.on('data', (chunk: Buffer) => {
        if (!c.startedAt() && /out_time_us=[1-9]/.test(chunk.toString())) c.media();
      });
      c.attaching();
      // A copy keeps the cached pictures' own times: the file starts up to one keyframe interval early.
      await session.connect(ffmpeg, 'preroll');
      c.connected(Date.now());
      let gone = '';
      const why = await session.watch(ffmpeg, { oneTrack: true, producing: () => c.startedAt() > 0, onGone: (reason) => (gone = reason) });
      if (gone) c.ended(gone);
      else if (why === 'exit') c.ended('the track stopped sending media');
    } finally {
      await ffmpeg?.stop(5000);
      await session.close();
    }
    const code = await ffmpeg.exited;
    c.log.debug({ code, stderr: ffmpeg.stderrTail().split('\n').slice(-3).join(' | ') }, 'track recorder ended');
    if (code !== 0 && !c.startedAt()) throw new Error(`track recorder failed: ${ffmpeg.stderrTail().split('\n').slice(-3).join(' ')}`);
  }
}
