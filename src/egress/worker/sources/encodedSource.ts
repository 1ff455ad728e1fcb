// Encoded egress (participant, track composite): an encoder FFmpeg makes MPEG-TS on stdout for
// every output. When the source's tracks change (republish, leave and rejoin, replaced producer)
// only the encoder restarts, on a new tap session; its timestamps continue where the last one stopped.
import { launchFfmpeg, type FfmpegProcess } from '../../../media/ffmpeg.ts';
import type { TapTrack } from '../../contract.ts';
import { encoderArgs, encoderReplay, isPassthrough } from '../ffmpegArgs.ts';
import { TapSession } from '../tapSession.ts';
import type { RunContext, SourceStrategy } from './types.ts';

/** Seconds without RTP after which FFmpeg ends by itself (muted long, unpublished, gateway gone). */
const ENCODER_RTP_TIMEOUT_S = 5;
/**
 * The encoder ends by itself after ENCODER_RTP_TIMEOUT_S without packets, so its input gets audio
 * and video before then (tapInput.ts).
 */
const ENCODER_GATE = { holdAudioMs: 3000, gateTimeoutMs: 4000 };
/** An encoder that dies this many times in a row before any output fails the egress. */
const MAX_START_FAILURES = 3;

export class EncodedSource implements SourceStrategy {
  readonly #c: RunContext;
  /** The session feeding the encoder now (a new output asks it for a keyframe). */
  #session: TapSession | undefined;

  constructor(c: RunContext) {
    this.#c = c;
  }

  async outputAdded(): Promise<void> {
    await this.#session?.keyframe();
  }

  async run(): Promise<void> {
    const c = this.#c;
    const encoding = c.spec.encoding!;
    let attempt = 0;
    let startFailures = 0;
    let firstEncoderAt = 0;
    let mediaOffsetS = 0;
    while (!c.signal.aborted) {
      const session = await TapSession.attach(c);
      if (!session) break;
      if ('ended' in session) {
        c.ended(session.ended);
        break;
      }
      this.#session = session;
      const video = session.tracks.find((t) => t.kind === 'video');
      const audio = session.tracks.find((t) => t.kind === 'audio');
      const ordered = [video, audio].filter((t): t is TapTrack => t !== undefined);
      let ffmpeg: FfmpegProcess | undefined;
      let produced = false;
      try {
        const { sdpFile } = await session.plumb(ordered, `encoder-${attempt++}`, ENCODER_GATE);
        if (firstEncoderAt) mediaOffsetS = (Date.now() - firstEncoderAt) / 1000;
        const plan = { hasVideo: !!video, hasAudio: !!audio, ...(video ? { videoMime: video.codec.mimeType } : {}), encoding, offsetS: mediaOffsetS };
        ffmpeg = launchFfmpeg(encoderArgs(sdpFile, plan, ENCODER_RTP_TIMEOUT_S), { stdout: 'pipe', log: c.log });
        firstEncoderAt ||= Date.now();
        c.log.info({ tracks: ordered.map((t) => `${t.kind}:${t.codec.mimeType}`), passthrough: isPassthrough(plan), attempt }, 'encoder started');
        ffmpeg.stdout!.on('data', (chunk: Buffer) => {
          if (!produced) {
            produced = true;
            startFailures = 0;
            c.media();
          }
          c.output();
          c.outputs.write(chunk);
        });
        // An encoder decodes the kept pictures and drops what precedes the request (ffmpegArgs.ts).
        await session.connect(ffmpeg, encoderReplay(plan));
        c.connected(Date.now());
        const why = await session.watch(ffmpeg, { oneTrack: false, producing: () => c.startedAt() > 0, onGone: (reason) => c.ended(reason) });
        if (why === 'changed') c.log.info('source tracks changed; re-attaching');
      } finally {
        await ffmpeg?.stop(3000);
        await session.close();
        this.#session = undefined;
      }
      const code = await ffmpeg.exited;
      if (!produced && !c.signal.aborted && code !== 0 && ++startFailures >= MAX_START_FAILURES) {
        throw new Error(`encoder failed: ${ffmpeg.stderrTail().split('\n').slice(-3).join(' ')}`);
      }
      if (c.outputs.fileError && !c.outputs.streamCount) throw new Error(`file output failed: ${c.outputs.fileError}`);
    }
  }
}
