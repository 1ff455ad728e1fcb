// Audio levels: RMS of PCM, and the RFC 6464 level a publisher puts in each audio RTP packet
// (ssrc-audio-level). mediasoup's AudioLevelObserver reads only that header extension, so a
// publisher that leaves it out is never an active speaker, however loud it is.

export const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

/** Root-mean-square level of PCM in dBFS (-Infinity for digital silence, 0 for a full-scale square). */
export function rmsDbfs(samples: Int16Array): number {
  if (samples.length === 0) return -Infinity;
  let sum = 0;
  for (const s of samples) sum += s * s;
  return 20 * Math.log10(Math.sqrt(sum / samples.length) / 32768);
}

/** The one-byte payload of ssrc-audio-level: -dBov, 0 (loudest) to 127 (silence); no voice flag. */
export function audioLevelByte(dbov: number): number {
  return Number.isFinite(dbov) ? Math.min(127, Math.max(0, Math.round(-dbov))) : 127;
}

/**
 * Turns a stream of 16-bit mono PCM (any chunking) into one level per `frameSamples` samples, in
 * order: the level of the k-th Opus packet of an encoder fed the same PCM.
 */
export class PcmLevelMeter {
  readonly #frameBytes: number;
  #pending: Buffer = Buffer.alloc(0);
  readonly #levels: number[] = [];
  #last = -Infinity;

  constructor(frameSamples: number) {
    this.#frameBytes = frameSamples * 2;
  }

  push(pcm: Buffer): void {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, pcm]) : pcm;
    while (this.#pending.length >= this.#frameBytes) {
      const frame = this.#pending.subarray(0, this.#frameBytes);
      this.#pending = this.#pending.subarray(this.#frameBytes);
      const samples = new Int16Array(frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.length));
      this.#levels.push(rmsDbfs(samples));
      // A reader that fell far behind reads the present, not a backlog.
      if (this.#levels.length > 50) this.#levels.shift();
    }
  }

  /** The level (dBov) of the next frame; the last one again when the PCM has not arrived yet. */
  next(): number {
    const level = this.#levels.shift();
    if (level !== undefined) this.#last = level;
    return this.#last;
  }
}
