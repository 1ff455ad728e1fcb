// One tap session of a run on the gateway (src/egress/EgressTaps.ts through TapClient): opened when
// the source has tracks (waiting while it has none), plumbed into a TapInput and an SDP for FFmpeg,
// connected once FFmpeg listens, kept alive, and watched for a change of the source's tracks.
import fs from 'node:fs';
import path from 'node:path';
import type { FfmpegProcess } from '../../media/ffmpeg.ts';
import type { Logger } from '../../logger.ts';
import { sleep } from '../../time.ts';
import type { JobSpec, ReplayMode, TapTrack } from '../contract.ts';
import { TapError, type TapClient } from './TapClient.ts';
import { TapInput } from './tapInput.ts';

/** How the worker's RTP input waits for a picture (tapInput.ts). */
export interface InputGate {
  holdAudioMs: number;
  gateTimeoutMs: number;
}

export interface TapSessionDeps {
  spec: Pick<JobSpec, 'egressId' | 'roomName' | 'source'>;
  taps: TapClient;
  /** Where the gateway sends RTP (this worker's address). */
  rtpHost: string;
  /** Folder for the SDP files. */
  workDir: string;
  log: Logger;
  /** The run's stop. */
  signal: AbortSignal;
}

/** Why watching a session ended: the run stops, FFmpeg exited, or the source's tracks changed. */
export type WatchEnd = 'stop' | 'exit' | 'changed';

/** Gateway unreachable this many times in a row (a second apart): the run fails. */
const MAX_OPEN_FAILURES = 60;

/**
 * Resolves when `input`'s FFmpeg listens, FFmpeg exited, or the run stops, whichever comes first:
 * what a start waits for before the gateway sends.
 */
export function untilListening(input: TapInput, ffmpeg: FfmpegProcess, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    input.listening.then(done, done);
    ffmpeg.exited.then(done, done);
  });
}

export class TapSession {
  readonly #d: TapSessionDeps;
  readonly id: string;
  readonly version: number;
  readonly tracks: TapTrack[];
  #input: TapInput | undefined;
  #closed = false;

  private constructor(d: TapSessionDeps, opened: { sessionId: string; version: number; tracks: TapTrack[] }) {
    this.#d = d;
    this.id = opened.sessionId;
    this.version = opened.version;
    this.tracks = opened.tracks;
  }

  /**
   * Opens the gateway session, or waits (participant away) until it can. `ended`: the source is
   * gone, with the gateway's reason; undefined when the run stopped first.
   */
  static async attach(d: TapSessionDeps): Promise<TapSession | { ended: string } | undefined> {
    const { spec } = d;
    let warned = '';
    let failures = 0;
    while (!d.signal.aborted) {
      try {
        const r = await d.taps.open(spec.egressId, spec.roomName, spec.source);
        failures = 0;
        if (r.state === 'ready') return new TapSession(d, r);
        if (r.state === 'ended') return { ended: r.reason };
        if (warned !== r.reason) d.log.info({ reason: r.reason }, 'egress waiting for its source');
        warned = r.reason;
      } catch (err) {
        // Gateway restarting: keep trying for a while, then give up honestly.
        if (++failures > MAX_OPEN_FAILURES) throw new Error(`cannot reach the gateway: ${(err as Error).message}`);
        if (failures === 1) d.log.warn({ err: (err as Error).message }, 'gateway tap request failed; retrying');
      }
      await sleep(1000, d.signal);
    }
    return undefined;
  }

  /** The worker's receiving end of `tracks` (tapInput.ts) and FFmpeg's SDP file for it. */
  async plumb(tracks: TapTrack[], name: string, gate: InputGate): Promise<{ sdpFile: string; input: TapInput }> {
    const input = await TapInput.open({ host: this.#d.rtpHost, tracks, ...gate, log: this.#d.log });
    this.#input = input;
    const sdpFile = path.join(this.#d.workDir, `${name}.sdp`);
    fs.writeFileSync(sdpFile, input.sdp);
    return { sdpFile, input };
  }

  /** Once `ffmpeg` listens on the input's ports, the gateway sends (and asks the source for a keyframe). */
  async connect(ffmpeg: FfmpegProcess, replay: ReplayMode): Promise<void> {
    const input = this.#input;
    if (!input) throw new Error('tap session connected before it was plumbed');
    await untilListening(input, ffmpeg, this.#d.signal);
    await this.#d.taps.connect(this.id, input.targets, replay);
  }

  /** Asks the source for a keyframe (a new output wants one soon); a failure only costs time. */
  async keyframe(): Promise<void> {
    await this.#d.taps.keyframe(this.id).catch((err: unknown) => this.#d.log.debug({ err: (err as Error).message }, 'keyframe request failed'));
  }

  /**
   * Keeps the session alive until the run stops, FFmpeg exits, or the source's tracks change.
   * `oneTrack`: a track egress follows one track, and other changes of its owner do not concern it;
   * its track gone ends it (`onGone`). `producing`: until media flows, a keyframe is asked for again.
   */
  async watch(ffmpeg: FfmpegProcess, opts: { oneTrack: boolean; producing: () => boolean; onGone: (reason: string) => void }): Promise<WatchEnd> {
    const { signal } = this.#d;
    let exited = false;
    const onExit = () => {
      exited = true;
    };
    ffmpeg.exited.then(onExit, onExit);
    let keyframes = 0;
    while (!signal.aborted && !exited) {
      await Promise.race([sleep(1000, signal), ffmpeg.exited]);
      if (signal.aborted || exited) break;
      try {
        const ka = await this.#d.taps.keepalive(this.id);
        if (opts.oneTrack && ka.gone) {
          opts.onGone('the track was unpublished');
          return 'exit';
        }
        if (ka.version !== this.version && !opts.oneTrack) return 'changed';
      } catch (err) {
        if (err instanceof TapError && err.status === 404) return 'changed'; // the gateway dropped the session (restart)
      }
      // Until media flows, ask again for a keyframe (the first one can arrive before FFmpeg listens).
      if (!opts.producing() && keyframes++ < 5) await this.keyframe();
    }
    return signal.aborted ? 'stop' : 'exit';
  }

  /** Closes the input and the gateway's side; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#input?.close();
    await this.#d.taps.close(this.id).catch((err: unknown) => this.#d.log.debug({ err: (err as Error).message }, 'tap session close failed (it expires by itself)'));
  }
}
