// What a source strategy (track, encoded, composite) gets from its run, and what it offers back.
// A strategy makes media from the job's source; the run keeps the record, the outputs and the stop.
import type { Logger } from '../../../logger.ts';
import type { JobSpec } from '../../contract.ts';
import type { RunOutputs } from '../runOutputs.ts';
import type { TapClient } from '../TapClient.ts';

export interface RunContext {
  spec: JobSpec;
  taps: TapClient;
  outputs: RunOutputs;
  /** Where the gateway sends RTP (this worker's address). */
  rtpHost: string;
  /** Folder for this run's SDP files. */
  workDir: string;
  log: Logger;
  /** The run's stop (StopEgress, the duration limit, the worker draining). */
  signal: AbortSignal;
  /** The source's media reaches the worker from `atMs` on (wall clock): the recording's real start. */
  connected(atMs: number): void;
  /** Media went to the outputs: the first call makes the egress ACTIVE. */
  media(): void;
  /** Encoded bytes went to the outputs (the end of what they hold). */
  output(): void;
  /** Since when the media has been recorded (ms; 0 before the first media). */
  startedAt(): number;
  /** Why the source ended by itself (shown in the record's details). */
  ended(reason: string): void;
  /** The job's progress phase went to 'attaching' (where the outputs stage their pieces). */
  attaching(): void;
}

export interface SourceStrategy {
  /** Makes media until the run stops or the source ends; throws when the egress failed. */
  run(): Promise<void>;
  /** A stream output was added (UpdateStream): it starts at a keyframe, asked for now. */
  outputAdded?(): Promise<void>;
  /** UpdateLayout (room composite). */
  setLayout?(layout: string): void;
}
