// The gateway's one shutdown, in named stages. Each phase of startGateway registers what it
// started under the stage where it must stop; close() runs the stages in this order whatever order
// they were registered in, so a start that fails half-way stops what it had started in the same
// order as a full shutdown.
import type { Logger } from '../logger.ts';

export const SHUTDOWN_STAGES = [
  /** The egress worker child drains its egresses while the rooms still send media. */
  'egress worker',
  /** Publishers go first, so ingresses end INACTIVE with their FFmpeg gone. */
  'publishers',
  /** Before the rooms and the worker sockets: running jobs end with agent_job_ended and their workers hear terminate. */
  'agents',
  /** Participants hear SERVER_SHUTDOWN before their sockets close. */
  'rooms',
  /** Before the HTTP server's close, which upgraded sockets would otherwise hold open. */
  'sockets',
  'http server',
  'egress taps',
  'console',
  'url proxy',
  /** Ingress state writes reach Redis before it goes. */
  'ingress state',
  'egress queue',
  'webhooks',
  'media workers',
  'redis',
  'embedded redis',
] as const;

export type ShutdownStage = (typeof SHUTDOWN_STAGES)[number];

type Step = () => Promise<void> | void;

export class Shutdown {
  readonly #log: Logger;
  readonly #steps = new Map<ShutdownStage, Step[]>();
  #running: Promise<void> | undefined;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Registers a step; steps of one stage run in registration order. */
  at(stage: ShutdownStage, step: Step): void {
    const steps = this.#steps.get(stage) ?? [];
    steps.push(step);
    this.#steps.set(stage, steps);
  }

  /** Runs every registered step once, stage by stage; a failing step is logged and the rest still run. */
  run(): Promise<void> {
    this.#running ??= (async () => {
      for (const stage of SHUTDOWN_STAGES) {
        for (const step of this.#steps.get(stage) ?? []) {
          try {
            await step();
          } catch (err) {
            this.#log.error({ err, stage }, 'shutdown step failed');
          }
        }
      }
    })();
    return this.#running;
  }
}
