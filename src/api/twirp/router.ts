// The one Twirp router: POST /twirp/<package.Service>/<Method>, JSON or protobuf bodies decoded with
// @livekit/protocol message classes, errors as Twirp JSON. Services register typed methods here.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AnyMessage, Message, MessageType } from '@bufbuild/protobuf';
import { authorize } from '../../auth/authorize.ts';
import type { Claims } from '../../auth/grants.ts';
import type { TokenVerifier } from '../../auth/tokens.ts';
import { ApiError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { Metrics } from '../../metrics.ts';
import { readBody, sendJson } from '../../http/body.ts';

export const TWIRP_PREFIX = '/twirp/';
export const MAX_BODY_BYTES = 1024 * 1024;

export interface TwirpContext {
  claims: Claims;
  log: Logger;
}

export interface TwirpMethod {
  readonly input: MessageType<AnyMessage>;
  handle(req: AnyMessage, ctx: TwirpContext): Promise<AnyMessage>;
}

/** Binds a handler to its request type; the cast is the one place generic message types are erased. */
export function method<I extends Message<I>, O extends Message<O>>(
  input: MessageType<I>,
  handle: (req: I, ctx: TwirpContext) => Promise<O>,
): TwirpMethod {
  return { input, handle } as unknown as TwirpMethod;
}

export interface TwirpService {
  /** Fully qualified, e.g. `livekit.RoomService`. */
  readonly name: string;
  readonly methods: Readonly<Record<string, TwirpMethod>>;
}

type Encoding = 'json' | 'protobuf';

function contentEncoding(header: string | undefined): Encoding | undefined {
  // The SDK sends `application/json;charset=UTF-8`; like the Go server, ignore parameters.
  const type = (header ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') return 'json';
  if (type === 'application/protobuf') return 'protobuf';
  return undefined;
}

function bearerToken(req: IncomingMessage, url: URL): string | undefined {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1] : undefined;
  }
  return url.searchParams.get('access_token') ?? undefined;
}

export class TwirpRouter {
  readonly #services = new Map<string, TwirpService>();
  readonly #verifier: TokenVerifier;
  readonly #metrics: Metrics;
  readonly #log: Logger;

  constructor(opts: { verifier: TokenVerifier; metrics: Metrics; log: Logger }) {
    this.#verifier = opts.verifier;
    this.#metrics = opts.metrics;
    this.#log = opts.log;
  }

  register(service: TwirpService): void {
    this.#services.set(service.name, service);
  }

  /**
   * Calls a method in-process with already-verified claims (the console's server side): the same
   * handler, grant checks and validation as over HTTP, JSON in and out. Throws ApiError.
   */
  async invoke(serviceName: string, methodName: string, json: unknown, claims: Claims): Promise<unknown> {
    const m = this.#services.get(serviceName)?.methods[methodName];
    if (!m) throw new ApiError('bad_route', `no such method: ${serviceName}/${methodName}`);
    const log = this.#log.child({ rpc: `${serviceName}/${methodName}`, via: 'console' });
    const started = process.hrtime.bigint();
    const label = { service: serviceName, method: methodName };
    let code = 'ok';
    try {
      const input = decode(m.input, Buffer.from(JSON.stringify(json ?? {})), 'json');
      const output = await m.handle(input, { claims, log });
      return output.toJson({ useProtoFieldName: true, emitDefaultValues: true });
    } catch (err) {
      const apiErr = toApiError(err, log);
      code = apiErr.code;
      throw apiErr;
    } finally {
      this.#metrics.twirpRequests.inc({ ...label, code });
      this.#metrics.twirpDuration.observe(label, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /** Handles a request under TWIRP_PREFIX; never throws. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const [serviceName = '', methodName = '', ...rest] = url.pathname.slice(TWIRP_PREFIX.length).split('/');
    const started = process.hrtime.bigint();
    const service = this.#services.get(serviceName);
    const m = rest.length === 0 ? service?.methods[methodName] : undefined;
    const label = { service: service ? serviceName : 'unknown', method: m ? methodName : 'unknown' };
    const requestId = req.headers['x-livekit-request-id'];
    const log = this.#log.child({ rpc: `${serviceName}/${methodName}`, ...(requestId ? { requestId } : {}) });
    let code = 'ok';
    try {
      if (!m) throw new ApiError('bad_route', `no such method: ${url.pathname}`);
      if (req.method !== 'POST') throw new ApiError('bad_route', `unsupported method ${req.method} (only POST is allowed)`);
      const encoding = contentEncoding(req.headers['content-type']);
      if (!encoding) {
        throw new ApiError(
          'bad_route',
          `unexpected Content-Type '${req.headers['content-type'] ?? ''}': use application/json or application/protobuf`,
        );
      }
      // Each method checks its own grant (api/twirp/*.ts), as LiveKit's services do.
      const claims = await authorize(this.#verifier, bearerToken(req, url), { missing: 'missing access token: send Authorization: Bearer <token>' });
      const body = await readBody(req, MAX_BODY_BYTES);
      const input = decode(m.input, body, encoding);
      const output = await m.handle(input, { claims, log });
      const payload =
        encoding === 'json'
          ? JSON.stringify(output.toJson({ useProtoFieldName: true, emitDefaultValues: true }))
          : Buffer.from(output.toBinary());
      res.writeHead(200, {
        'Content-Type': encoding === 'json' ? 'application/json' : 'application/protobuf',
        'Content-Length': Buffer.byteLength(payload),
      });
      res.end(payload);
    } catch (err) {
      const apiErr = toApiError(err, log);
      code = apiErr.code;
      if (apiErr.status >= 500) log.error({ code, msg: apiErr.message }, 'twirp call failed');
      else log.debug({ code, msg: apiErr.message }, 'twirp call rejected');
      // Unread request bytes would otherwise be parsed as the next request on a keep-alive socket.
      const closeAfter = !req.readableEnded;
      sendJson(res, apiErr.status, apiErr.toJSON(), closeAfter ? { Connection: 'close' } : {});
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.#metrics.twirpRequests.inc({ ...label, code });
      this.#metrics.twirpDuration.observe(label, seconds);
    }
  }
}

function decode(type: MessageType<AnyMessage>, body: Buffer, encoding: Encoding): AnyMessage {
  if (encoding === 'protobuf') {
    try {
      return type.fromBinary(body);
    } catch (err) {
      throw new ApiError('malformed', `the protobuf request could not be decoded: ${(err as Error).message}`);
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(body.length === 0 ? '{}' : body.toString('utf8'));
  } catch (err) {
    throw new ApiError('malformed', `the json request could not be decoded: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ApiError('malformed', `the json request must be an object of ${type.typeName} fields`);
  }
  try {
    // Unknown fields are dropped like the Go server's protojson DiscardUnknown; camelCase and
    // snake_case names are both accepted by protobuf-es.
    return type.fromJson(json as never, { ignoreUnknownFields: true });
  } catch (err) {
    throw new ApiError('malformed', `invalid ${type.typeName}: ${(err as Error).message}`);
  }
}

function toApiError(err: unknown, log: Logger): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof Error && /Connection is closed|ECONNREFUSED|Command timed out|max retries|Stream isn't writeable/i.test(err.message)) {
    log.error({ err: err.message }, 'redis unavailable');
    return new ApiError('unavailable', 'state store (Redis) is unavailable; try again shortly');
  }
  log.error({ err }, 'unexpected error in twirp handler');
  return new ApiError('internal', 'internal error');
}
