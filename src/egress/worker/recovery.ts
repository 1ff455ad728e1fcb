// A job whose worker died (BullMQ found it stalled) is finished honestly by the worker that picks
// it up again: what the dead worker recorded is kept where this host can reach it, and the egress
// ends FAILED saying what happened and where the rest stays.
import fs from 'node:fs';
import os from 'node:os';
import { EgressStatus, StreamInfo_Status } from '@livekit/protocol';
import type { Logger } from '../../logger.ts';
import type { Storage, StoredFile } from '../../storage/Storage.ts';
import { sleep } from '../../time.ts';
import type { JobProgress, JobSpec } from '../contract.ts';
import type { EgressRecords } from '../EgressRecords.ts';
import { recoverPieces } from './recoverPieces.ts';

export interface RecoveryDeps {
  spec: JobSpec;
  /** What the dead worker last reported (job.updateProgress). */
  progress: Partial<JobProgress>;
  storage: Storage;
  records: EgressRecords;
  log: Logger;
}

/**
 * The worker that ran this job died (BullMQ found it stalled). Its FFmpeg sinks saw end of input
 * and closed the file (and the last HLS segment and snapshot), so the media recorded until the
 * kill is kept when it is on this host; the egress ends FAILED saying so. Resuming the recording
 * into a new part is not attempted.
 */
export async function recoverStalledJob({ spec, progress, storage, records, log }: RecoveryDeps): Promise<'recovered'> {
  log.warn({ previousHost: progress.host, file: progress.localFile }, 'recovering a stalled egress job');
  // progress.localFile is this egress's own file (created exclusively, or its staging file), so
  // what is stored and reported is its recording, never another egress's of the same name.
  let stored: StoredFile | undefined;
  let note = '';
  const local = progress.localFile;
  if (local && progress.host === os.hostname() && fs.existsSync(local) && spec.file) {
    // Let the orphaned sink finish its last fragment: wait until the size stops changing.
    let last = -1;
    for (let i = 0; i < 40; i++) {
      const size = fs.statSync(local).size;
      if (size === last) break;
      last = size;
      await sleep(500);
    }
    if (last > 0) stored = await storage.store(spec.egressId, local, spec.file.filepath, spec.file.s3);
    note = stored ? '; the media recorded before is kept' : '; nothing had been recorded';
  } else if (local) {
    note = `; the partial recording stays on host ${progress.host ?? '?'} at ${local}`;
  }
  const pieces = await recoverPieces(spec, progress, storage, log);
  const keptPieces = Number(pieces.segments?.info.segmentCount ?? 0n) + pieces.images.reduce((n, r) => n + Number(r?.info.imageCount ?? 0n), 0);
  if (!stored && keptPieces > 0) note = `${note}; the media recorded before is kept`;
  note += pieces.note;
  const ended = Date.now();
  await records.transition(spec.egressId, { type: 'end', status: EgressStatus.EGRESS_FAILED }, (i) => {
    i.error = `the egress worker running this job stopped (killed or lost)${note}`;
    i.details = 'End reason: worker lost (stalled job)';
    i.endedAt = BigInt(ended) * 1_000_000n;
    for (const s of i.streamResults) if (s.status === StreamInfo_Status.ACTIVE) s.status = StreamInfo_Status.FAILED;
    for (const f of i.fileResults) {
      if (progress.startedAt) {
        f.startedAt = BigInt(progress.startedAt) * 1_000_000n;
        f.endedAt = BigInt(ended) * 1_000_000n;
      }
      if (stored) {
        f.filename = stored.name;
        f.location = stored.location;
        f.size = BigInt(stored.size);
        if (stored.backup) i.backupStorageUsed = true;
      }
    }
    const times = <T extends { startedAt: bigint; endedAt: bigint }>(x: T): T => {
      if (progress.startedAt) x.startedAt = BigInt(progress.startedAt) * 1_000_000n;
      x.endedAt = BigInt(ended) * 1_000_000n;
      return x;
    };
    if (pieces.segments) {
      i.segmentResults = [times(pieces.segments.info)];
      if (i.result.case === 'segments') i.result.value = pieces.segments.info.clone();
    }
    pieces.images.forEach((r, n) => {
      if (r && i.imageResults[n]) i.imageResults[n] = times(r.info);
    });
    if (pieces.segments?.backup || pieces.images.some((r) => r?.backup)) i.backupStorageUsed = true;
  });
  return 'recovered';
}
