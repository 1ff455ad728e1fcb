// pino JSON logs; one child logger per module (`module` field), as mediasoup does with its debug namespaces.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

let root: Logger = pino({ level: process.env.ROOMGATE_LOG_LEVEL ?? 'info', base: { svc: 'roomgate' } });

/** Replaces the root logger (level from config, or a destination chosen by the host). */
export function configureLogger(level: LevelWithSilent, destination?: NodeJS.WritableStream): Logger {
  root = destination
    ? pino({ level, base: { svc: 'roomgate' } }, destination)
    : pino({ level, base: { svc: 'roomgate' } });
  return root;
}

export function rootLogger(): Logger {
  return root;
}

export function moduleLogger(module: string, bindings: Record<string, unknown> = {}): Logger {
  return root.child({ module, ...bindings });
}
