// One validated configuration object: defaults → YAML file → ROOMGATE_* environment.
//
// Every setting has one name: its YAML path (`rtc.min_port`) and its env var
// (`ROOMGATE_RTC_MIN_PORT`) are two spellings of it, so a message can always
// name the setting exactly where the user wrote it.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { deriveWorkerSecret } from './auth/workerCredential.ts';

export const DEV_API_KEY = 'devkey';
export const DEV_API_SECRET = 'secret';

const port = z.int().min(1).max(65535);
const seconds = z.int().min(0).max(7 * 24 * 3600);
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

function cidrOrHost(v: string): boolean {
  const [addr, bits, extra] = v.split('/');
  if (extra !== undefined || !addr) return false;
  const family = net.isIP(addr);
  if (bits !== undefined) return family !== 0 && /^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
  return family !== 0 || /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i.test(addr);
}

const schema = z.strictObject({
  port: port.default(7880),
  bind: z.string().min(1).default('127.0.0.1'),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  data_dir: z.string().min(1).default('./data'),
  node_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only').optional(),
  rtmp: z
    .strictObject({
      /** The RTMP listener; off in processes that only serve the API (and in most tests). */
      enabled: z.boolean().default(true),
      port: port.default(1935),
      /** Most concurrent RTMP publishers; more are refused at the handshake (0 = no limit). */
      max_publishers: z.int().min(0).default(0),
      /** Connections that have not published yet; a new one evicts the oldest when full. */
      max_pending: z.int().min(1).max(100_000).default(64),
      /** Connections from one address that have not published yet; its oldest is evicted past it. */
      max_pending_per_ip: z.int().min(1).max(100_000).default(8),
      /** Seconds for the first handshake bytes to arrive. */
      first_bytes_timeout: z.int().min(1).max(60).default(3),
      /** Seconds from connect to publishing with a valid key. */
      publish_timeout: z.int().min(1).max(600).default(10),
      /** Public RTMP URL handed out in IngressInfo.url (default from the announced IP or bind address). */
      base_url: z.url({ protocol: /^rtmps?$/, error: 'must be an rtmp:// or rtmps:// URL' }).optional(),
    })
    .default({ enabled: true, port: 1935, max_publishers: 0, max_pending: 64, max_pending_per_ip: 8, first_bytes_timeout: 3, publish_timeout: 10 }),
  ingress: z
    .strictObject({
      /**
       * Special-use targets a URL ingress may fetch anyway (loopback, private, link-local, …):
       * IP addresses, CIDR ranges or host names.
       */
      url_allow: z
        .array(
          z.string().refine((v) => cidrOrHost(v), 'must be an IP address, a CIDR range (10.0.0.0/8) or a host name'),
        )
        .default([]),
      /** Concurrent URL ingress pulls (each an ffprobe, then an FFmpeg); CreateIngress refuses more. */
      url_max_sessions: z.int().min(1).max(10_000).default(16),
    })
    .default({ url_allow: [], url_max_sessions: 16 }),
  whip: z
    .strictObject({
      /** Public WHIP endpoint handed out in IngressInfo.url for WHIP ingresses. */
      base_url: httpUrl.optional(),
      /** Concurrent WHIP publishers; more are refused with 503 + Retry-After. */
      max_sessions: z.int().min(1).max(100_000).default(100),
    })
    .default({ max_sessions: 100 }),
  whep: z
    .strictObject({
      /** Concurrent WHEP viewers; more are refused with 503 + Retry-After. */
      max_sessions: z.int().min(1).max(100_000).default(500),
    })
    .default({ max_sessions: 500 }),
  sip: z
    .strictObject({
      /** The SIP listener (UDP) that answers calls for the inbound trunks (livekit.SIP API). */
      enabled: z.boolean().default(false),
      port: port.default(5060),
      /** Address of the SIP socket and the calls' RTP sockets (default: `bind`). */
      bind: z.string().refine((v) => net.isIPv4(v), 'must be an IPv4 address').optional(),
      /** Address written into SDP answers and Contact headers (default: the announced IP, else the bind address). */
      announced_ip: z.string().refine((v) => net.isIPv4(v), 'must be an IPv4 address').optional(),
      /** Concurrent calls; more get 486 Busy Here. */
      max_calls: z.int().min(1).max(10_000).default(64),
    })
    .default({ enabled: false, port: 5060, max_calls: 64 }),
  rtc: z
    .strictObject({
      min_port: port.default(40000),
      max_port: port.default(49999),
      announced_ip: z.union([z.ipv4(), z.ipv6()], { error: 'must be an IPv4 or IPv6 address' }).optional(),
      workers: z.int().min(1).max(256).optional(),
      /** Consumers one mediasoup worker carries before a room on it places new receivers on another worker. */
      consumers_per_worker: z.int().min(1).max(1_000_000).default(500),
      /** STUN servers handed to clients (stun: URLs). */
      stun_urls: z.array(z.string().regex(/^stuns?:/, 'must be a stun: or stuns: URL')).default([]),
    })
    .default({ min_port: 40000, max_port: 49999, consumers_per_worker: 500, stun_urls: [] }),
  turn: z
    .strictObject({
      urls: z.array(z.string().regex(/^turns?:/, 'must be a turn: or turns: URL')).default([]),
      /** coturn's static-auth-secret (use-auth-secret): clients get time-limited credentials. */
      secret: z.string().min(1).optional(),
      ttl: z.int().min(60).max(7 * 24 * 3600).default(86400),
    })
    .default({ urls: [], ttl: 86400 }),
  keys: z
    .record(z.string().min(1, 'API key must not be empty'), z.string().min(1, 'API secret must not be empty'))
    .default({}),
  redis: z
    .strictObject({
      url: z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }).optional(),
      embedded_port: port.default(6380),
    })
    .default({ embedded_port: 6380 }),
  cluster: z
    .strictObject({
      /**
       * Several gateway nodes sharing one Redis (README "Several nodes"): each node registers itself
       * with a heartbeat, rooms are placed on the least-loaded node, and any node answers the API
       * and signaling for any room. Needs redis.url and a node_id per node.
       */
      enabled: z.boolean().default(false),
      /** Milliseconds between heartbeats (the node's key is refreshed and its load published). */
      heartbeat_ms: z.int().min(100).max(60_000).default(1000),
      /** Milliseconds a heartbeat lives: a node silent this long is dead and its rooms are finished. */
      node_ttl_ms: z.int().min(300).max(600_000).default(3000),
      /** Milliseconds a node waits for another node's answer to a forwarded call before `unavailable`. */
      rpc_timeout_ms: z.int().min(100).max(120_000).default(5000),
      /** http(s) URL the other nodes reach this node's API and signaling at (default: from the bind or announced IP and port). */
      advertise_url: httpUrl.optional(),
    })
    .default({ enabled: false, heartbeat_ms: 1000, node_ttl_ms: 3000, rpc_timeout_ms: 5000 }),
  webhook: z
    .strictObject({
      urls: z.array(httpUrl).default([]),
      api_key: z.string().min(1).optional(),
    })
    .default({ urls: [] }),
  room: z
    .strictObject({
      empty_timeout: seconds.default(300),
      departure_timeout: seconds.default(20),
      max_participants: z.int().min(0).default(0),
    })
    .default({ empty_timeout: 300, departure_timeout: 20, max_participants: 0 }),
  egress: z
    .strictObject({
      /** Run one egress worker child process beside the gateway (the two-command quick start records). */
      worker: z.boolean().default(true),
      /** Cores one worker may reserve for jobs; default 80% of this host's cores (LiveKit's cap). */
      max_cpu: z.number().positive().max(1024).optional(),
      /** Cores reserved per job type (LiveKit's cost model; track measured far below LiveKit's 0.5). */
      cost_track: z.number().positive().max(64).default(0.05),
      cost_track_composite: z.number().positive().max(64).default(1),
      cost_participant: z.number().positive().max(64).default(2),
      cost_room_composite: z.number().positive().max(64).default(4),
      /** Longest recording per output type, seconds (0 = no limit); past it the egress ends LIMIT_REACHED. */
      file_max_duration: seconds.default(0),
      stream_max_duration: seconds.default(0),
      segment_max_duration: seconds.default(0),
      /** Recordings without S3 storage land here (default <data_dir>/egress). */
      output_dir: z.string().min(1).optional(),
      /** Files whose upload failed wait here until a retry uploads them (default <data_dir>/egress-backup). */
      backup_dir: z.string().min(1).optional(),
      /** Seconds without a lock renewal after which a worker's job counts as stalled (BullMQ lockDuration). */
      stall_timeout: z.int().min(2).max(3600).default(30),
      /** Seconds a stopping worker gives running egresses to finish (COMPLETE, uploaded) before ending them FAILED. */
      drain_timeout: z.int().min(1).max(3600).default(30),
      /** Seconds between progress reports of an active egress (file duration/size, egress_updated); 0 = only on status changes. */
      progress_interval: z.int().min(0).max(3600).default(10),
      /** Address the gateway sends RTP to: where this worker's FFmpeg listens (the worker's host). */
      rtp_host: z.union([z.ipv4(), z.ipv6()], { error: 'must be an IPv4 or IPv6 address' }).default('127.0.0.1'),
      /** The gateway's API as the worker reaches it (default http://127.0.0.1:<port>). */
      gateway_url: httpUrl.optional(),
      /** Workers' credential for the internal tap API (default: derived from the first API secret). */
      worker_secret: z.string().min(32, 'must be at least 32 characters').optional(),
      /** Addresses or CIDR ranges the gateway may send egress RTP to, besides egress.rtp_host. */
      worker_rtp_hosts: z.array(z.union([z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()], { error: 'must be an IPv4 or IPv6 address or CIDR range' })).default([]),
      /** Most tap sessions (worker attachments to a source) open at once; more are refused. */
      max_tap_sessions: z.int().min(1).max(100_000).default(512),
      /** Default S3 storage for outputs whose request has no S3 block; used whole, never mixed with a request's fields. */
      s3: z
        .strictObject({
          bucket: z.string().min(1).optional(),
          region: z.string().min(1).optional(),
          endpoint: httpUrl.optional(),
          access_key: z.string().min(1).optional(),
          secret: z.string().min(1).optional(),
          force_path_style: z.boolean().default(false),
        })
        .default({ force_path_style: false }),
    })
    .default({
      worker: true,
      cost_track: 0.05,
      cost_track_composite: 1,
      cost_participant: 2,
      cost_room_composite: 4,
      file_max_duration: 0,
      stream_max_duration: 0,
      segment_max_duration: 0,
      stall_timeout: 30,
      drain_timeout: 30,
      progress_interval: 10,
      rtp_host: '127.0.0.1',
      worker_rtp_hosts: [],
      max_tap_sessions: 512,
      s3: { force_path_style: false },
    }),
  console: z
    .strictObject({
      /** The operator's web console at /console (sign-in with an API key and secret). */
      enabled: z.boolean().default(true),
      /** Seconds a console sign-in lasts; the session cookie expires with it. */
      session_ttl: z.int().min(10).max(7 * 24 * 3600).default(8 * 3600),
    })
    .default({ enabled: true, session_ttl: 8 * 3600 }),
  agents: z
    .strictObject({
      /** Seconds an agent worker has to accept or reject a job offer before it goes to another worker. */
      offer_timeout: z.int().min(1).max(600).default(10),
    })
    .default({ offer_timeout: 10 }),
});

export type FileConfig = z.input<typeof schema>;
type Parsed = z.output<typeof schema>;

export interface Config extends Omit<Parsed, 'rtc' | 'node_id' | 'egress'> {
  node_id: string;
  rtc: Parsed['rtc'] & { workers: number };
  egress: Parsed['egress'] & { max_cpu: number; output_dir: string; backup_dir: string; worker_secret: string };
  /** True when no key was configured and the dev pair devkey/secret is in use. */
  dev_keys: boolean;
  /** Where the values came from, for the start-up log. */
  config_file?: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type EnvKind = 'int' | 'number' | 'string' | 'list' | 'bool';
/** Env var → YAML path and how to read its string. */
const ENV_SETTINGS: Record<string, { path: string[]; kind: EnvKind }> = {
  ROOMGATE_PORT: { path: ['port'], kind: 'int' },
  ROOMGATE_BIND: { path: ['bind'], kind: 'string' },
  ROOMGATE_LOG_LEVEL: { path: ['log_level'], kind: 'string' },
  ROOMGATE_DATA_DIR: { path: ['data_dir'], kind: 'string' },
  ROOMGATE_NODE_ID: { path: ['node_id'], kind: 'string' },
  ROOMGATE_RTMP_ENABLED: { path: ['rtmp', 'enabled'], kind: 'bool' },
  ROOMGATE_RTMP_PORT: { path: ['rtmp', 'port'], kind: 'int' },
  ROOMGATE_RTMP_MAX_PUBLISHERS: { path: ['rtmp', 'max_publishers'], kind: 'int' },
  ROOMGATE_RTMP_MAX_PENDING: { path: ['rtmp', 'max_pending'], kind: 'int' },
  ROOMGATE_RTMP_MAX_PENDING_PER_IP: { path: ['rtmp', 'max_pending_per_ip'], kind: 'int' },
  ROOMGATE_RTMP_FIRST_BYTES_TIMEOUT: { path: ['rtmp', 'first_bytes_timeout'], kind: 'int' },
  ROOMGATE_RTMP_PUBLISH_TIMEOUT: { path: ['rtmp', 'publish_timeout'], kind: 'int' },
  ROOMGATE_RTMP_BASE_URL: { path: ['rtmp', 'base_url'], kind: 'string' },
  ROOMGATE_INGRESS_URL_ALLOW: { path: ['ingress', 'url_allow'], kind: 'list' },
  ROOMGATE_INGRESS_URL_MAX_SESSIONS: { path: ['ingress', 'url_max_sessions'], kind: 'int' },
  ROOMGATE_WHIP_BASE_URL: { path: ['whip', 'base_url'], kind: 'string' },
  ROOMGATE_WHIP_MAX_SESSIONS: { path: ['whip', 'max_sessions'], kind: 'int' },
  ROOMGATE_WHEP_MAX_SESSIONS: { path: ['whep', 'max_sessions'], kind: 'int' },
  ROOMGATE_SIP_ENABLED: { path: ['sip', 'enabled'], kind: 'bool' },
  ROOMGATE_SIP_PORT: { path: ['sip', 'port'], kind: 'int' },
  ROOMGATE_SIP_BIND: { path: ['sip', 'bind'], kind: 'string' },
  ROOMGATE_SIP_ANNOUNCED_IP: { path: ['sip', 'announced_ip'], kind: 'string' },
  ROOMGATE_SIP_MAX_CALLS: { path: ['sip', 'max_calls'], kind: 'int' },
  ROOMGATE_RTC_MIN_PORT: { path: ['rtc', 'min_port'], kind: 'int' },
  ROOMGATE_RTC_MAX_PORT: { path: ['rtc', 'max_port'], kind: 'int' },
  ROOMGATE_ANNOUNCED_IP: { path: ['rtc', 'announced_ip'], kind: 'string' },
  ROOMGATE_RTC_WORKERS: { path: ['rtc', 'workers'], kind: 'int' },
  ROOMGATE_RTC_CONSUMERS_PER_WORKER: { path: ['rtc', 'consumers_per_worker'], kind: 'int' },
  ROOMGATE_STUN_URLS: { path: ['rtc', 'stun_urls'], kind: 'list' },
  ROOMGATE_TURN_URLS: { path: ['turn', 'urls'], kind: 'list' },
  ROOMGATE_TURN_SECRET: { path: ['turn', 'secret'], kind: 'string' },
  ROOMGATE_TURN_TTL: { path: ['turn', 'ttl'], kind: 'int' },
  ROOMGATE_REDIS_URL: { path: ['redis', 'url'], kind: 'string' },
  ROOMGATE_REDIS_EMBEDDED_PORT: { path: ['redis', 'embedded_port'], kind: 'int' },
  ROOMGATE_CLUSTER_ENABLED: { path: ['cluster', 'enabled'], kind: 'bool' },
  ROOMGATE_CLUSTER_HEARTBEAT_MS: { path: ['cluster', 'heartbeat_ms'], kind: 'int' },
  ROOMGATE_CLUSTER_NODE_TTL_MS: { path: ['cluster', 'node_ttl_ms'], kind: 'int' },
  ROOMGATE_CLUSTER_RPC_TIMEOUT_MS: { path: ['cluster', 'rpc_timeout_ms'], kind: 'int' },
  ROOMGATE_CLUSTER_ADVERTISE_URL: { path: ['cluster', 'advertise_url'], kind: 'string' },
  ROOMGATE_WEBHOOK_URLS: { path: ['webhook', 'urls'], kind: 'list' },
  ROOMGATE_WEBHOOK_API_KEY: { path: ['webhook', 'api_key'], kind: 'string' },
  ROOMGATE_ROOM_EMPTY_TIMEOUT: { path: ['room', 'empty_timeout'], kind: 'int' },
  ROOMGATE_ROOM_DEPARTURE_TIMEOUT: { path: ['room', 'departure_timeout'], kind: 'int' },
  ROOMGATE_ROOM_MAX_PARTICIPANTS: { path: ['room', 'max_participants'], kind: 'int' },
  ROOMGATE_EGRESS_WORKER: { path: ['egress', 'worker'], kind: 'bool' },
  ROOMGATE_EGRESS_MAX_CPU: { path: ['egress', 'max_cpu'], kind: 'number' },
  ROOMGATE_EGRESS_COST_TRACK: { path: ['egress', 'cost_track'], kind: 'number' },
  ROOMGATE_EGRESS_COST_TRACK_COMPOSITE: { path: ['egress', 'cost_track_composite'], kind: 'number' },
  ROOMGATE_EGRESS_COST_PARTICIPANT: { path: ['egress', 'cost_participant'], kind: 'number' },
  ROOMGATE_EGRESS_COST_ROOM_COMPOSITE: { path: ['egress', 'cost_room_composite'], kind: 'number' },
  ROOMGATE_EGRESS_FILE_MAX_DURATION: { path: ['egress', 'file_max_duration'], kind: 'int' },
  ROOMGATE_EGRESS_STREAM_MAX_DURATION: { path: ['egress', 'stream_max_duration'], kind: 'int' },
  ROOMGATE_EGRESS_SEGMENT_MAX_DURATION: { path: ['egress', 'segment_max_duration'], kind: 'int' },
  ROOMGATE_EGRESS_OUTPUT_DIR: { path: ['egress', 'output_dir'], kind: 'string' },
  ROOMGATE_EGRESS_BACKUP_DIR: { path: ['egress', 'backup_dir'], kind: 'string' },
  ROOMGATE_EGRESS_STALL_TIMEOUT: { path: ['egress', 'stall_timeout'], kind: 'int' },
  ROOMGATE_EGRESS_DRAIN_TIMEOUT: { path: ['egress', 'drain_timeout'], kind: 'int' },
  ROOMGATE_EGRESS_PROGRESS_INTERVAL: { path: ['egress', 'progress_interval'], kind: 'int' },
  ROOMGATE_CONSOLE_ENABLED: { path: ['console', 'enabled'], kind: 'bool' },
  ROOMGATE_CONSOLE_SESSION_TTL: { path: ['console', 'session_ttl'], kind: 'int' },
  ROOMGATE_EGRESS_RTP_HOST: { path: ['egress', 'rtp_host'], kind: 'string' },
  ROOMGATE_EGRESS_GATEWAY_URL: { path: ['egress', 'gateway_url'], kind: 'string' },
  ROOMGATE_EGRESS_WORKER_SECRET: { path: ['egress', 'worker_secret'], kind: 'string' },
  ROOMGATE_EGRESS_WORKER_RTP_HOSTS: { path: ['egress', 'worker_rtp_hosts'], kind: 'list' },
  ROOMGATE_EGRESS_MAX_TAP_SESSIONS: { path: ['egress', 'max_tap_sessions'], kind: 'int' },
  ROOMGATE_EGRESS_S3_BUCKET: { path: ['egress', 's3', 'bucket'], kind: 'string' },
  ROOMGATE_EGRESS_S3_REGION: { path: ['egress', 's3', 'region'], kind: 'string' },
  ROOMGATE_EGRESS_S3_ENDPOINT: { path: ['egress', 's3', 'endpoint'], kind: 'string' },
  ROOMGATE_EGRESS_S3_ACCESS_KEY: { path: ['egress', 's3', 'access_key'], kind: 'string' },
  ROOMGATE_EGRESS_S3_SECRET: { path: ['egress', 's3', 'secret'], kind: 'string' },
  ROOMGATE_EGRESS_S3_FORCE_PATH_STYLE: { path: ['egress', 's3', 'force_path_style'], kind: 'bool' },
  ROOMGATE_AGENTS_OFFER_TIMEOUT: { path: ['agents', 'offer_timeout'], kind: 'int' },
};
/** Env vars read elsewhere or handled specially; listed so typos in others are caught. */
const OTHER_ENV = new Set(['ROOMGATE_CONFIG', 'ROOMGATE_API_KEY', 'ROOMGATE_API_SECRET', 'ROOMGATE_CACHE_DIR']);

export const KNOWN_ENV = [...Object.keys(ENV_SETTINGS), ...OTHER_ENV].sort();

function envValue(name: string, raw: string, kind: EnvKind): unknown {
  const value = raw.trim();
  if (kind === 'int') {
    // Number('') is 0 and Number('1e3') is 1000: accept plain decimal integers only.
    if (!/^-?\d+$/.test(value)) throw new ConfigError(`${name}: expected an integer, got '${raw}'`);
    return Number(value);
  }
  if (kind === 'number') {
    if (!/^-?\d+(\.\d+)?$/.test(value)) throw new ConfigError(`${name}: expected a number, got '${raw}'`);
    return Number(value);
  }
  if (kind === 'bool') {
    if (/^(true|1|yes|on)$/i.test(value)) return true;
    if (/^(false|0|no|off)$/i.test(value)) return false;
    throw new ConfigError(`${name}: expected true or false, got '${raw}'`);
  }
  if (kind === 'list') return value === '' ? [] : value.split(',').map((s) => s.trim()).filter(Boolean);
  return value;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function readFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config file ${file}: cannot be read (${(err as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${file}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  if (doc == null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`config file ${file}: expected a mapping of settings at the top level`);
  }
  return doc as Record<string, unknown>;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Path given with --config; ROOMGATE_CONFIG is used when absent. */
  configFile?: string;
}

/** Builds the config or throws ConfigError naming the setting and what is wrong with it. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.configFile ?? env.ROOMGATE_CONFIG;
  const raw: Record<string, unknown> = file ? readFile(file) : {};
  const origin = new Map<string, string>(); // YAML path → env var that set it

  for (const name of Object.keys(env)) {
    if (!name.startsWith('ROOMGATE_') || OTHER_ENV.has(name)) continue;
    const setting = ENV_SETTINGS[name];
    if (!setting) throw new ConfigError(`${name}: unknown setting (known: ${KNOWN_ENV.join(', ')})`);
    setPath(raw, setting.path, envValue(name, env[name]!, setting.kind));
    origin.set(setting.path.join('.'), name);
  }

  const apiKey = env.ROOMGATE_API_KEY;
  const apiSecret = env.ROOMGATE_API_SECRET;
  if ((apiKey === undefined) !== (apiSecret === undefined)) {
    throw new ConfigError('ROOMGATE_API_KEY and ROOMGATE_API_SECRET must be set together');
  }
  if (apiKey !== undefined && apiSecret !== undefined) {
    const keys = (typeof raw.keys === 'object' && raw.keys !== null ? raw.keys : {}) as Record<string, unknown>;
    raw.keys = { ...keys, [apiKey]: apiSecret };
    origin.set(`keys.${apiKey}`, 'ROOMGATE_API_SECRET');
    origin.set('keys', 'ROOMGATE_API_KEY');
  }

  const result = schema.safeParse(raw);
  if (!result.success) {
    const messages = result.error.issues.map((issue) => {
      const dotted = issue.path.map(String).join('.');
      // An env var may have set a parent of the failing path (ROOMGATE_WEBHOOK_URLS → webhook.urls.0).
      const fromEnv = issue.path
        .map((_, i) => origin.get(issue.path.slice(0, issue.path.length - i).map(String).join('.')))
        .find(Boolean);
      const where = fromEnv ?? (file ? `config file ${file}: ${dotted || '(top level)'}` : dotted);
      const value = issue.path.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k], raw);
      const shown = value === undefined || typeof value === 'object' ? '' : ` (got '${String(value)}')`;
      return issue.code === 'unrecognized_keys'
        ? `${where}: unknown setting(s) ${issue.keys.join(', ')}`
        : `${where}: ${issue.message}${shown}`;
    });
    throw new ConfigError(messages.join('\n'));
  }
  const parsed = result.data;
  // Where the user set it; for a setting set nowhere, both of its spellings.
  const envOf = (path: string) => Object.keys(ENV_SETTINGS).find((k) => ENV_SETTINGS[k]!.path.join('.') === path);
  const name = (path: string) =>
    origin.get(path) ?? (file ? `config file ${file}: ${path}` : envOf(path) ? `${envOf(path)} (${path})` : path);

  if (parsed.rtc.min_port > parsed.rtc.max_port) {
    throw new ConfigError(
      `${name('rtc.min_port')}: must not be above ${name('rtc.max_port')} (${parsed.rtc.min_port} > ${parsed.rtc.max_port})`,
    );
  }
  const devKeys = Object.keys(parsed.keys).length === 0;
  const keys = devKeys ? { [DEV_API_KEY]: DEV_API_SECRET } : parsed.keys;
  if (devKeys && !isLoopback(parsed.bind)) {
    throw new ConfigError(
      `${name('bind')}: refusing to listen on non-loopback address '${parsed.bind}' with the built-in dev API key; ` +
        'set ROOMGATE_API_KEY and ROOMGATE_API_SECRET (or keys: in the config file) first',
    );
  }
  if (parsed.turn.urls.length > 0 && !parsed.turn.secret) {
    throw new ConfigError(`${name('turn.secret')}: required when TURN URLs are configured (coturn's static-auth-secret)`);
  }
  if (parsed.cluster.enabled) {
    // Nodes share rooms through Redis: an embedded one per node would be a cluster of one, and two
    // nodes named after one host would each think the other's rooms are their own.
    if (!parsed.redis.url) throw new ConfigError(`${name('cluster.enabled')}: needs ${name('redis.url')} (one Redis shared by every node)`);
    if (!parsed.node_id) throw new ConfigError(`${name('cluster.enabled')}: needs ${name('node_id')}, unique per node`);
    if ((parsed.bind === '0.0.0.0' || parsed.bind === '::') && !parsed.cluster.advertise_url && !parsed.rtc.announced_ip) {
      throw new ConfigError(`${name('cluster.advertise_url')}: needed when bound to all interfaces without ${name('rtc.announced_ip')}`);
    }
    if (parsed.cluster.node_ttl_ms < 2 * parsed.cluster.heartbeat_ms) {
      throw new ConfigError(`${name('cluster.node_ttl_ms')}: must be at least twice ${name('cluster.heartbeat_ms')}, so one late heartbeat does not kill a node`);
    }
  }
  if (parsed.webhook.api_key && !(parsed.webhook.api_key in keys)) {
    throw new ConfigError(`${name('webhook.api_key')}: '${parsed.webhook.api_key}' is not one of the configured keys`);
  }
  return {
    ...parsed,
    node_id: parsed.node_id ?? `ND_${os.hostname().replace(/[^A-Za-z0-9_-]/g, '').slice(0, 40)}`,
    keys,
    dev_keys: devKeys,
    rtc: { ...parsed.rtc, workers: parsed.rtc.workers ?? os.availableParallelism() },
    egress: {
      ...parsed.egress,
      max_cpu: parsed.egress.max_cpu ?? os.availableParallelism() * 0.8,
      output_dir: parsed.egress.output_dir ?? `${parsed.data_dir}/egress`,
      backup_dir: parsed.egress.backup_dir ?? `${parsed.data_dir}/egress-backup`,
      // The first key's secret: the gateway and a worker loading the same configuration agree.
      worker_secret: parsed.egress.worker_secret ?? deriveWorkerSecret(Object.values(keys)[0]!),
    },
    ...(file ? { config_file: file } : {}),
  };
}
