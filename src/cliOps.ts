// `roomgate room|ingress|egress|dispatch …`: the gateway's API from a shell, like LiveKit's `lk`,
// over the stock livekit-server-sdk (so it works against any LiveKit-compatible server). Tables for
// people, --json for scripts. Errors from the server are printed with their Twirp code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Message } from '@bufbuild/protobuf';
import {
  AgentDispatchClient,
  EgressClient,
  EgressStatus,
  EncodedFileOutput,
  IngressClient,
  IngressInput,
  RoomServiceClient,
  StreamOutput,
  StreamProtocol,
  type EgressInfo,
  type IngressInfo,
  type ParticipantInfo,
} from 'livekit-server-sdk';
import { ConfigError, loadConfig } from './config.ts';
import { sleep } from './async.ts';

export const OPS_USAGE = `  roomgate room list|create NAME|delete NAME|participants NAME
  roomgate ingress create --type rtmp|whip|url --room R --identity I [--name N] [--source URL] [--transcode]
  roomgate ingress list [--room R] | delete ID
  roomgate egress start room|participant|track --room R [--identity I] [--track TR_x]
                        [--file path.mp4] [--rtmp URL]... [--layout grid|speaker] [--wait [--duration S]]
  roomgate egress list [--room R] [--active] | stop ID | update-stream ID [--add URL]... [--remove URL]...
  roomgate dispatch create --room R --agent NAME [--metadata M] | list --room R
      Server and credentials: --url --api-key --api-secret, or LIVEKIT_URL, LIVEKIT_API_KEY,
      LIVEKIT_API_SECRET (default: this machine's configured gateway and key). --json prints JSON.
`;

const COMMON = {
  url: { type: 'string' },
  'api-key': { type: 'string' },
  'api-secret': { type: 'string' },
  json: { type: 'boolean' },
  config: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

interface Common {
  url: string;
  apiKey: string;
  apiSecret: string;
  json: boolean;
}

function common(values: { url?: string | undefined; 'api-key'?: string | undefined; 'api-secret'?: string | undefined; json?: boolean | undefined; config?: string | undefined }): Common {
  let url = values.url ?? process.env.LIVEKIT_URL;
  let apiKey = values['api-key'] ?? process.env.LIVEKIT_API_KEY;
  let apiSecret = values['api-secret'] ?? process.env.LIVEKIT_API_SECRET;
  if ((apiKey === undefined) !== (apiSecret === undefined)) throw new ConfigError('give the API key and secret together (--api-key/--api-secret or LIVEKIT_API_KEY/LIVEKIT_API_SECRET)');
  if (!url || !apiKey || !apiSecret) {
    // Same machine as the gateway: its own configuration answers what was not given.
    const config = loadConfig(values.config ? { configFile: values.config } : {});
    url ??= `http://${config.bind === '0.0.0.0' || config.bind === '::' ? '127.0.0.1' : config.bind}:${config.port}`;
    if (!apiKey || !apiSecret) [apiKey, apiSecret] = Object.entries(config.keys)[0]!;
  }
  // The SDK accepts ws(s):// (as `lk` does) and turns it into http(s).
  return { url: url.replace(/^ws(s?):\/\//, 'http$1://'), apiKey: apiKey!, apiSecret: apiSecret!, json: values.json ?? false };
}

function parse<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  return parseArgs({ args: argv, strict: true, allowPositionals: true, options: { ...COMMON, ...options } });
}

const out = (s: string): void => void process.stdout.write(`${s}\n`);

function printJson(value: Message | Message[] | Record<string, unknown>): void {
  const toJson = (m: unknown) => (m && typeof (m as Message).toJson === 'function' ? (m as Message).toJson() : m);
  out(JSON.stringify(Array.isArray(value) ? value.map(toJson) : toJson(value), null, 2));
}

/** A plain text table: header row, then rows; columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  if (rows.length === 0) return '(none)';
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const time = (s: bigint | number) => (Number(s) ? new Date(Number(s) * 1000).toISOString().replace('.000Z', 'Z') : '');
const nsTime = (ns: bigint) => (ns ? new Date(Number(ns / 1_000_000n)).toISOString().replace(/\.\d+Z$/, 'Z') : '');
const enumName = (e: Record<number, string>, v: number, prefix = '') => (e[v] ?? String(v)).replace(prefix, '');

function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function positional(positionals: string[], index: number, what: string): string {
  const v = positionals[index];
  if (!v) throw new ConfigError(`missing ${what}`);
  return v;
}

// ---- room ---------------------------------------------------------------------------------

function participantRows(ps: ParticipantInfo[]): string[][] {
  const kinds = ['standard', 'ingress', 'egress', 'sip', 'agent'];
  return ps.map((p) => [
    p.identity,
    kinds[p.kind] ?? String(p.kind),
    enumName({ 0: 'JOINING', 1: 'JOINED', 2: 'ACTIVE', 3: 'DISCONNECTED' }, p.state),
    p.tracks
      .map((t) => `${t.type === 1 ? 'video' : t.type === 0 ? 'audio' : 'data'} ${t.mimeType}${t.width ? ` ${t.width}x${t.height}` : ''}${t.simulcast ? ` simulcast×${t.layers.length}` : ''}${t.muted ? ' muted' : ''}`)
      .join('; '),
  ]);
}

async function roomCommand(argv: string[]): Promise<void> {
  const [sub = '', ...rest] = argv;
  const { values, positionals } = parse(rest, {
    'empty-timeout': { type: 'string' },
    'max-participants': { type: 'string' },
    metadata: { type: 'string' },
  });
  const c = common(values);
  const rooms = new RoomServiceClient(c.url, c.apiKey, c.apiSecret);
  switch (sub) {
    case 'list': {
      const list = await rooms.listRooms(positionals.length ? positionals : undefined);
      if (c.json) return printJson(list);
      return out(table(['NAME', 'SID', 'PARTICIPANTS', 'PUBLISHERS', 'CREATED'], list.map((r) => [r.name, r.sid, String(r.numParticipants), String(r.numPublishers), time(r.creationTime)])));
    }
    case 'create': {
      const room = await rooms.createRoom({
        name: positional(positionals, 0, 'room name: roomgate room create NAME'),
        ...(values['empty-timeout'] ? { emptyTimeout: Number(values['empty-timeout']) } : {}),
        ...(values['max-participants'] ? { maxParticipants: Number(values['max-participants']) } : {}),
        ...(values.metadata ? { metadata: values.metadata } : {}),
      });
      if (c.json) return printJson(room);
      return out(`room ${room.name} ${room.sid}`);
    }
    case 'delete': {
      const name = positional(positionals, 0, 'room name: roomgate room delete NAME');
      await rooms.deleteRoom(name);
      if (c.json) return printJson({ deleted: name });
      return out(`room ${name} deleted`);
    }
    case 'participants': {
      const list = await rooms.listParticipants(positional(positionals, 0, 'room name: roomgate room participants NAME'));
      if (c.json) return printJson(list);
      return out(table(['IDENTITY', 'KIND', 'STATE', 'TRACKS'], participantRows(list)));
    }
    default:
      throw new ConfigError(`roomgate room: expected list, create, delete or participants, got '${sub}'`);
  }
}

// ---- ingress ------------------------------------------------------------------------------

/** What to paste into OBS (or another publisher) for this ingress. */
export function obsSettings(info: IngressInfo): string {
  if (info.inputType === IngressInput.RTMP_INPUT) {
    return ['OBS → Settings → Stream', '  Service:     Custom...', `  Server:      ${info.url}`, `  Stream Key:  ${info.streamKey}`].join('\n');
  }
  if (info.inputType === IngressInput.WHIP_INPUT) {
    return ['OBS → Settings → Stream', '  Service:       WHIP', `  Server:        ${info.url}`, `  Bearer Token:  ${info.streamKey}`].join('\n');
  }
  return `The gateway pulls ${info.url} itself: nothing to paste.`;
}

async function ingressCommand(argv: string[]): Promise<void> {
  const [sub = '', ...rest] = argv;
  const { values, positionals } = parse(rest, {
    type: { type: 'string' },
    room: { type: 'string' },
    identity: { type: 'string' },
    name: { type: 'string' },
    source: { type: 'string' },
    transcode: { type: 'boolean' },
  });
  const c = common(values);
  const client = new IngressClient(c.url, c.apiKey, c.apiSecret);
  switch (sub) {
    case 'create': {
      const type = { rtmp: IngressInput.RTMP_INPUT, whip: IngressInput.WHIP_INPUT, url: IngressInput.URL_INPUT }[values.type ?? ''];
      if (type === undefined) throw new ConfigError(`--type must be rtmp, whip or url, got '${values.type ?? ''}'`);
      if (!values.room || !values.identity) throw new ConfigError('ingress create needs --room and --identity');
      const source = values.source;
      if (type === IngressInput.URL_INPUT && !source) throw new ConfigError('a URL ingress needs --source URL (the stream to pull; --url is the server)');
      const info = await client.createIngress(type, {
        name: values.name ?? values.identity,
        roomName: values.room,
        participantIdentity: values.identity,
        participantName: values.identity,
        ...(source ? { url: source } : {}),
        ...(values.transcode ? { enableTranscoding: true } : {}),
      });
      if (c.json) return printJson(info);
      out(`ingress ${info.ingressId} (${enumName(IngressInput, info.inputType, '_INPUT').toLowerCase()}) → room ${info.roomName} as ${info.participantIdentity}\n`);
      return out(obsSettings(info));
    }
    case 'list': {
      const list = await client.listIngress(values.room ? { roomName: values.room } : {});
      if (c.json) return printJson(list);
      return out(
        table(
          ['ID', 'TYPE', 'ROOM', 'IDENTITY', 'STATUS', 'VIDEO', 'KEY'],
          list.map((i) => {
            const v = i.state?.video;
            return [
              i.ingressId,
              enumName(IngressInput, i.inputType, '_INPUT').replace('_INPUT', '').toLowerCase(),
              i.roomName,
              i.participantIdentity,
              enumName({ 0: 'INACTIVE', 1: 'BUFFERING', 2: 'PUBLISHING', 3: 'ERROR', 4: 'COMPLETE' }, i.state?.status ?? 0),
              v && v.width ? `${v.width}x${v.height} ${v.framerate.toFixed(0)}fps ${Math.round(v.averageBitrate / 1000)}kb/s` : '',
              // The full key is a publishing credential: `ingress create` printed it once, --json has it.
              i.streamKey ? `${i.streamKey.slice(0, 4)}…` : '',
            ];
          }),
        ),
      );
    }
    case 'delete': {
      const info = await client.deleteIngress(positional(positionals, 0, 'ingress id: roomgate ingress delete ID'));
      if (c.json) return printJson(info);
      return out(`ingress ${info.ingressId} deleted`);
    }
    default:
      throw new ConfigError(`roomgate ingress: expected create, list or delete, got '${sub}'`);
  }
}

// ---- egress -------------------------------------------------------------------------------

function egressKind(e: EgressInfo): string {
  return e.request.case?.replace(/([A-Z])/g, '_$1').toLowerCase() ?? '?';
}

function egressLine(e: EgressInfo): string {
  const f = e.fileResults[0];
  const parts = [e.egressId, enumName(EgressStatus, e.status, 'EGRESS_')];
  if (f) parts.push(`${(Number(f.duration) / 1e9).toFixed(1)} s`, humanBytes(Number(f.size)));
  if (e.streamResults.length) parts.push(`${e.streamResults.filter((s) => s.status === 0).length}/${e.streamResults.length} streams live`);
  if (f?.location) parts.push(f.location);
  if (e.backupStorageUsed) parts.push('(backup storage used)');
  if (e.error) parts.push(`error: ${e.error}`);
  return parts.join('  ');
}

const FINAL = new Set([EgressStatus.EGRESS_COMPLETE, EgressStatus.EGRESS_FAILED, EgressStatus.EGRESS_ABORTED, EgressStatus.EGRESS_LIMIT_REACHED]);

async function waitForEgress(client: EgressClient, started: EgressInfo, durationS: number | undefined, json: boolean): Promise<EgressInfo> {
  const tty = process.stderr.isTTY;
  let stopAsked = false;
  const stop = async () => {
    if (stopAsked) return;
    stopAsked = true;
    await client.stopEgress(started.egressId);
  };
  // Ctrl+C stops the recording and keeps waiting for the file; a second one exits at once.
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('\nstopping the egress (Ctrl+C again to exit without waiting)\n');
    stop().catch((err: unknown) => process.stderr.write(`roomgate: stop failed: ${(err as Error).message}\n`));
  };
  process.on('SIGINT', onSigint);
  // --duration counts recorded time: from the moment the egress is ACTIVE, not from the request.
  let deadline: number | undefined;
  let last = '';
  try {
    for (;;) {
      const info = (await client.listEgress({ egressId: started.egressId }))[0];
      if (!info) throw new Error(`egress ${started.egressId} disappeared`);
      const line = egressLine(info);
      if (!json && line !== last) {
        process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
        last = line;
      }
      if (FINAL.has(info.status)) {
        if (!json && tty) process.stderr.write('\n');
        return info;
      }
      if (info.status === EgressStatus.EGRESS_ACTIVE && durationS !== undefined) {
        deadline ??= Date.now() + durationS * 1000;
        if (Date.now() >= deadline) await stop();
      }
      await sleep(1000);
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}

async function egressCommand(argv: string[]): Promise<void> {
  const [sub = '', ...rest] = argv;
  const { values, positionals } = parse(rest, {
    room: { type: 'string' },
    identity: { type: 'string' },
    track: { type: 'string' },
    file: { type: 'string' },
    rtmp: { type: 'string', multiple: true },
    layout: { type: 'string' },
    wait: { type: 'boolean' },
    duration: { type: 'string' },
    active: { type: 'boolean' },
    add: { type: 'string', multiple: true },
    remove: { type: 'string', multiple: true },
  });
  const c = common(values);
  const client = new EgressClient(c.url, c.apiKey, c.apiSecret);
  switch (sub) {
    case 'start': {
      const kind = positionals[0];
      if (!values.room) throw new ConfigError('egress start needs --room');
      const file = values.file ? new EncodedFileOutput({ filepath: values.file }) : undefined;
      const stream = values.rtmp?.length ? new StreamOutput({ protocol: StreamProtocol.RTMP, urls: values.rtmp }) : undefined;
      if (kind !== 'track' && !file && !stream) throw new ConfigError('give an output: --file and/or --rtmp');
      const outputs = { ...(file ? { file } : {}), ...(stream ? { stream } : {}) };
      let info: EgressInfo;
      if (kind === 'room') info = await client.startRoomCompositeEgress(values.room, outputs, values.layout ? { layout: values.layout } : {});
      else if (kind === 'participant') {
        if (!values.identity) throw new ConfigError('egress start participant needs --identity');
        info = await client.startParticipantEgress(values.room, values.identity, outputs);
      } else if (kind === 'track') {
        if (!values.track || !values.file) throw new ConfigError('egress start track needs --track TR_x and --file');
        info = await client.startTrackEgress(values.room, values.file, values.track);
      } else throw new ConfigError(`egress start: expected room, participant or track, got '${kind ?? ''}'`);
      if (!values.wait) {
        if (c.json) return printJson(info);
        return out(`egress ${info.egressId} ${enumName(EgressStatus, info.status, 'EGRESS_')}`);
      }
      const duration = values.duration !== undefined ? Number(values.duration) : undefined;
      if (duration !== undefined && !(duration > 0)) throw new ConfigError(`--duration: expected seconds > 0, got '${values.duration}'`);
      const ended = await waitForEgress(client, info, duration, c.json);
      if (c.json) printJson(ended);
      else out(egressLine(ended));
      if (ended.status !== EgressStatus.EGRESS_COMPLETE) process.exitCode = 1;
      return;
    }
    case 'list': {
      const list = await client.listEgress({ ...(values.room ? { roomName: values.room } : {}), ...(values.active ? { active: true } : {}) });
      if (c.json) return printJson(list);
      return out(
        table(
          ['ID', 'KIND', 'ROOM', 'STATUS', 'STARTED', 'DURATION', 'SIZE', 'OUTPUT'],
          list.map((e) => {
            const f = e.fileResults[0];
            return [
              e.egressId,
              egressKind(e),
              e.roomName,
              enumName(EgressStatus, e.status, 'EGRESS_'),
              nsTime(e.startedAt),
              f ? `${(Number(f.duration) / 1e9).toFixed(1)}s` : '',
              f ? humanBytes(Number(f.size)) : '',
              [f?.location || f?.filename, ...e.streamResults.map((s) => s.url)].filter(Boolean).join(' '),
            ];
          }),
        ),
      );
    }
    case 'stop': {
      const info = await client.stopEgress(positional(positionals, 0, 'egress id: roomgate egress stop ID'));
      if (c.json) return printJson(info);
      return out(`egress ${info.egressId} ${enumName(EgressStatus, info.status, 'EGRESS_')}`);
    }
    case 'update-stream': {
      const id = positional(positionals, 0, 'egress id: roomgate egress update-stream ID --add URL --remove URL');
      if (!values.add?.length && !values.remove?.length) throw new ConfigError('update-stream needs --add URL and/or --remove URL');
      const info = await client.updateStream(id, values.add ?? [], values.remove ?? []);
      if (c.json) return printJson(info);
      return out(table(['URL', 'STATUS'], info.streamResults.map((s) => [s.url, enumName({ 0: 'ACTIVE', 1: 'FINISHED', 2: 'FAILED' }, s.status)])));
    }
    default:
      throw new ConfigError(`roomgate egress: expected start, list, stop or update-stream, got '${sub}'`);
  }
}

// ---- dispatch -----------------------------------------------------------------------------

async function dispatchCommand(argv: string[]): Promise<void> {
  const [sub = '', ...rest] = argv;
  const { values } = parse(rest, { room: { type: 'string' }, agent: { type: 'string' }, metadata: { type: 'string' } });
  const c = common(values);
  const client = new AgentDispatchClient(c.url, c.apiKey, c.apiSecret);
  if (!values.room) throw new ConfigError(`dispatch ${sub} needs --room`);
  if (sub === 'create') {
    if (!values.agent) throw new ConfigError('dispatch create needs --agent NAME');
    const d = await client.createDispatch(values.room, values.agent, values.metadata ? { metadata: values.metadata } : {});
    if (c.json) return printJson(d);
    return out(`dispatch ${d.id} of ${d.agentName} to ${d.room}`);
  }
  if (sub === 'list') {
    const list = await client.listDispatch(values.room);
    if (c.json) return printJson(list);
    return out(table(['ID', 'AGENT', 'ROOM', 'JOBS', 'METADATA'], list.map((d) => [d.id, d.agentName, d.room, String(d.state?.jobs.length ?? 0), d.metadata])));
  }
  throw new ConfigError(`roomgate dispatch: expected create or list, got '${sub}'`);
}

export const OPS_COMMANDS: Record<string, (argv: string[]) => Promise<void>> = {
  room: roomCommand,
  ingress: ingressCommand,
  egress: egressCommand,
  dispatch: dispatchCommand,
};
