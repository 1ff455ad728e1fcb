// Room composite (src/egress/composite/): compositor runs feed the same outputs as encoded egress.
import { CompositeRun } from '../../composite/CompositeRun.ts';
import type { RunContext, SourceStrategy } from './types.ts';

export class CompositeSource implements SourceStrategy {
  readonly #c: RunContext;
  #composite: CompositeRun | undefined;

  constructor(c: RunContext) {
    this.#c = c;
  }

  setLayout(layout: string): void {
    this.#composite?.setLayout(layout);
  }

  async run(): Promise<void> {
    const c = this.#c;
    const { spec } = c;
    if (spec.source.kind !== 'room_composite') return;
    const composite = new CompositeRun({
      egressId: spec.egressId,
      roomName: spec.roomName,
      roomId: spec.roomId,
      source: spec.source,
      encoding: spec.encoding!,
      taps: c.taps,
      rtpHost: c.rtpHost,
      workDir: c.workDir,
      log: c.log,
      signal: c.signal,
      write: (chunk) => {
        c.output();
        c.outputs.write(chunk);
      },
      onMedia: (startMs) => {
        c.connected(Math.round(startMs));
        c.media();
      },
    });
    this.#composite = composite;
    await composite.run();
    if (composite.endReason) c.ended(composite.endReason);
  }
}
