// The sfu's errors: each carries one of the few codes a media request can fail with, so an edge
// never reads an error's text to decide what to answer. SfuError is an ApiError (src/errors.ts, the
// leaf every edge maps to its transport once: Twirp in api/twirp/router.ts, JSON-WebSocket close
// codes and error frames in api/wsServer.ts, problem bodies in api/webrtcHttp.ts), so the
// sfu's codes reach every transport without a second table.
import { ApiError } from '../errors.ts';

export type SfuErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'permission_denied'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'unavailable'
  | 'unimplemented';

export class SfuError extends ApiError {
  override name = 'SfuError';
  declare readonly code: SfuErrorCode;

  constructor(code: SfuErrorCode, message: string, argument?: string) {
    super(code, message, argument ? { argument } : {});
  }
}

export const invalidArgument = (msg: string, argument?: string) => new SfuError('invalid_argument', msg, argument);
export const notFound = (msg: string) => new SfuError('not_found', msg);
export const permissionDenied = (msg: string) => new SfuError('permission_denied', msg);
export const failedPrecondition = (msg: string) => new SfuError('failed_precondition', msg);
export const resourceExhausted = (msg: string) => new SfuError('resource_exhausted', msg);
export const unavailable = (msg: string) => new SfuError('unavailable', msg);

export const roomNotFound = (room: string) => notFound(`room '${room}' does not exist`);
export const participantNotFound = (room: string, identity: string) => notFound(`participant '${identity}' is not in room '${room}'`);

/**
 * mediasoup's rejection of a request as the sfu's error. Bad parameters come as TypeError or
 * UnsupportedError (the caller's fault, said precisely), a closed object as InvalidStateError; the
 * worker validates too and answers with a plain Error naming the problem, whose text is the only
 * sign of it, so it is read here, once. Anything else (a dead worker) stays what it is.
 */
export function fromMediasoup(err: unknown): unknown {
  if (err instanceof ApiError || !(err instanceof Error)) return err;
  if (err.name === 'TypeError' || err.name === 'UnsupportedError') return invalidArgument(err.message);
  if (err.name === 'InvalidStateError') return failedPrecondition(err.message);
  if (/invalid|missing|wrong|not supported|unknown|already/i.test(err.message)) return invalidArgument(err.message);
  return err;
}

/** Runs a mediasoup request, its rejection translated by fromMediasoup. */
export async function mediasoupCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromMediasoup(err);
  }
}
