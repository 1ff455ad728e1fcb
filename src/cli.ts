// `roomgate start | token | help`. Parsing and process lifecycle only; the work is in main.ts.
import { parseArgs } from 'node:util';
import { ServerError } from 'livekit-server-sdk';
import type { VideoGrant } from './auth/grants.ts';
import { mintToken } from './auth/tokens.ts';
import { OPS_USAGE } from './cliOps.ts';
import { ConfigError, loadConfig } from './config.ts';
import { RedisUnavailableError } from './store/embeddedRedis.ts';

const USAGE = `Usage:
  roomgate start [--config file.yaml]
      Runs the gateway. Settings come from ROOMGATE_* env vars and the optional YAML file
      (--config or ROOMGATE_CONFIG); see README.md.
  roomgate token --room NAME --identity ID [options]
      Prints a LiveKit-compatible access token (like 'lk token create'). Options:
        --name NAME  --metadata JSON  --ttl 6h|30m|3600     identity fields and lifetime (default 6h)
        --join (default)  --admin  --create  --list  --record  --ingress-admin   grants
        --no-publish  --no-subscribe  --no-data  --sources camera,microphone  --hidden  --recorder
        --api-key KEY --api-secret SECRET   (default: the configured key, or the dev key)
${OPS_USAGE}`;

function parseTtl(value: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(value.trim());
  if (!m) throw new ConfigError(`--ttl: expected seconds or a duration like 30m, 6h, 2d; got '${value}'`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

async function tokenCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      room: { type: 'string' },
      identity: { type: 'string' },
      name: { type: 'string' },
      metadata: { type: 'string' },
      ttl: { type: 'string', default: '6h' },
      join: { type: 'boolean' },
      admin: { type: 'boolean' },
      create: { type: 'boolean' },
      list: { type: 'boolean' },
      record: { type: 'boolean' },
      'ingress-admin': { type: 'boolean' },
      'no-publish': { type: 'boolean' },
      'no-subscribe': { type: 'boolean' },
      'no-data': { type: 'boolean' },
      sources: { type: 'string' },
      hidden: { type: 'boolean' },
      recorder: { type: 'boolean' },
      'api-key': { type: 'string' },
      'api-secret': { type: 'string' },
      config: { type: 'string' },
    },
  });
  const serviceGrant = values.admin || values.create || values.list || values.record || values['ingress-admin'];
  const join = values.join ?? !serviceGrant;
  if (join && (!values.room || !values.identity)) throw new ConfigError('a join token needs --room and --identity');
  if (values.admin && !values.room) throw new ConfigError('--admin needs --room (the grant is per room)');

  let apiKey = values['api-key'];
  let apiSecret = values['api-secret'];
  if ((apiKey === undefined) !== (apiSecret === undefined)) throw new ConfigError('--api-key and --api-secret go together');
  if (!apiKey || !apiSecret) {
    const config = loadConfig(values.config ? { configFile: values.config } : {});
    [apiKey, apiSecret] = Object.entries(config.keys)[0]!;
  }
  const video: VideoGrant = {};
  if (values.room) video.room = values.room;
  if (join) {
    video.roomJoin = true;
    video.canPublish = !values['no-publish'];
    video.canSubscribe = !values['no-subscribe'];
    video.canPublishData = !values['no-data'];
    if (values.sources) video.canPublishSources = values.sources.split(',').map((s) => s.trim()).filter(Boolean);
  }
  if (values.admin) video.roomAdmin = true;
  if (values.create) video.roomCreate = true;
  if (values.list) video.roomList = true;
  if (values.record) video.roomRecord = true;
  if (values['ingress-admin']) video.ingressAdmin = true;
  if (values.hidden) video.hidden = true;
  if (values.recorder) video.recorder = true;
  const token = await mintToken(apiKey, apiSecret, {
    ...(values.identity ? { identity: values.identity } : {}),
    ...(values.name ? { name: values.name } : {}),
    ...(values.metadata ? { metadata: values.metadata } : {}),
    video,
    ttl: parseTtl(values.ttl),
  });
  process.stdout.write(`${token}\n`);
}

async function startCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, strict: true, options: { config: { type: 'string' } } });
  const config = loadConfig(values.config ? { configFile: values.config } : {});
  // Loaded here: the other commands start faster without mediasoup, BullMQ and the S3 client.
  const { rootLogger, startGateway } = await import('./main.ts');
  const gateway = await startGateway(config);
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      rootLogger().warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    rootLogger().info({ signal }, 'signal received');
    gateway.close().then(
      () => process.exit(0),
      (err: unknown) => {
        rootLogger().error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  switch (command) {
    case 'start':
      return startCommand(rest);
    case 'token':
      return tokenCommand(rest);
    case 'room':
    case 'ingress':
    case 'egress':
    case 'dispatch':
      return (await import('./cliOps.ts')).OPS_COMMANDS[command]!(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      throw new ConfigError(`unknown command '${command}'\n${USAGE}`);
  }
}

main().catch((err: unknown) => {
  // Configuration and environment problems are the user's to fix: say what, without a stack trace.
  if (err instanceof ConfigError || err instanceof RedisUnavailableError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`roomgate: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    process.stderr.write(`roomgate: ${(err as Error).message}: the HTTP port is taken; set ROOMGATE_PORT\n`);
    process.exit(2);
  }
  // A server's answer (livekit-server-sdk's TwirpError): its code and message, no stack.
  if (err instanceof ServerError) {
    process.stderr.write(`roomgate: ${err.code ? `${err.code}: ` : ''}${err.message} (HTTP ${err.status})\n`);
    process.exit(1);
  }
  if (err instanceof TypeError && err.message === 'fetch failed') {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    process.stderr.write(`roomgate: cannot reach the server: ${cause?.message ?? cause?.code ?? 'fetch failed'} (set --url or LIVEKIT_URL)\n`);
    process.exit(1);
  }
  process.stderr.write(`roomgate: failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
