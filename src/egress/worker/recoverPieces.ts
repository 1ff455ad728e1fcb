// The HLS and image outputs of a job whose worker died. What that worker had stored is safe
// already (its published playlist lists only stored segments). When its staging folders are on
// this host, the orphaned segmenter has completed its last segment on end of input: the rest is
// stored now, and the playlists are published with every segment and #EXT-X-ENDLIST.
import fs from 'node:fs';
import os from 'node:os';
import type { Logger } from '../../logger.ts';
import type { Storage } from '../../storage/Storage.ts';
import { sleep } from '../../time.ts';
import type { JobProgress, JobSpec } from '../contract.ts';
import { HlsPublisher, type HlsResult } from './hlsOutput.ts';
import { ImagePublisher, type ImagesResult } from './imageOutput.ts';

/** How long an orphaned segmenter may take to write its last segment, … */
const ORPHAN_WAIT_MS = 20_000;
/** … and how long its folder must stay unchanged to count as abandoned without a final playlist. */
const ORPHAN_QUIET_MS = 3000;

export interface RecoveredPieces {
  segments?: HlsResult;
  images: (ImagesResult | undefined)[];
  /** For the egress error: where what could not be recovered here stays. */
  note: string;
}

export async function recoverPieces(spec: JobSpec, progress: Partial<JobProgress>, storage: Storage, log: Logger): Promise<RecoveredPieces> {
  const out: RecoveredPieces = { images: [], note: '' };
  const dirs = [...(progress.segmentsDir ? [progress.segmentsDir] : []), ...(progress.imagesDirs ?? [])];
  if (dirs.length === 0) return out;
  if (progress.host !== os.hostname()) {
    out.note = `; segments and images not stored before the stop stay on host ${progress.host ?? '?'} in ${dirs.join(', ')}`;
    return out;
  }
  if (spec.segments && progress.segmentsDir && fs.existsSync(progress.segmentsDir)) {
    const publisher = new HlsPublisher({
      egressId: spec.egressId,
      dir: progress.segmentsDir,
      spec: spec.segments,
      target: storage.target(spec.segments.s3),
      backup: storage,
      log,
      recovering: true,
    });
    for (const until = Date.now() + ORPHAN_WAIT_MS; !publisher.localEnded(ORPHAN_QUIET_MS) && Date.now() < until; ) await sleep(250);
    out.segments = await publisher.finish();
  }
  for (const [index, im] of (spec.images ?? []).entries()) {
    const dir = progress.imagesDirs?.[index];
    if (!dir || !fs.existsSync(dir)) {
      out.images.push(undefined);
      continue;
    }
    const publisher = new ImagePublisher({ egressId: spec.egressId, index, dir, spec: im, target: storage.target(im.s3), backup: storage, log, recovering: true });
    out.images.push(await publisher.finish());
  }
  return out;
}
