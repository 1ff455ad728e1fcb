// Errors that carry their Twirp code; the API boundary maps everything else to `internal`.
// Twirp codes and HTTP statuses: https://twitchtv.github.io/twirp/docs/spec_v7.html#error-codes

export const TWIRP_STATUS = {
  canceled: 408,
  unknown: 500,
  invalid_argument: 400,
  malformed: 400,
  deadline_exceeded: 408,
  not_found: 404,
  bad_route: 404,
  already_exists: 409,
  permission_denied: 403,
  unauthenticated: 401,
  resource_exhausted: 429,
  failed_precondition: 412,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  dataloss: 500,
} as const;

export type TwirpCode = keyof typeof TWIRP_STATUS;

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly code: TwirpCode,
    message: string,
    readonly meta: Record<string, string> = {},
  ) {
    super(message);
  }

  get status(): number {
    return TWIRP_STATUS[this.code];
  }

  toJSON(): { code: TwirpCode; msg: string; meta: Record<string, string> } {
    return { code: this.code, msg: this.message, meta: this.meta };
  }
}

export const unauthenticated = (msg: string) => new ApiError('unauthenticated', msg);
export const permissionDenied = (msg: string) => new ApiError('permission_denied', msg);
export const invalidArgument = (msg: string, argument?: string) =>
  new ApiError('invalid_argument', msg, argument ? { argument } : {});
export const notFound = (msg: string) => new ApiError('not_found', msg);
export const unavailable = (msg: string) => new ApiError('unavailable', msg);

export const roomNotFound = (room: string) => notFound(`room '${room}' does not exist`);
export const participantNotFound = (room: string, identity: string) =>
  notFound(`participant '${identity}' is not in room '${room}'`);
