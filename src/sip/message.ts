// SIP message syntax (RFC 3261 §7, §20, §25), only as much as a user agent answering and ending
// calls needs: start line, headers (compact forms, folded lines, repeated headers), body by
// Content-Length, name-addr/URI user and tag parameters, Via branch. Pure: no I/O. The parser
// never throws; anything it cannot read is `undefined`, which the transport drops or answers 400.

export interface SipRequest {
  kind: 'request';
  method: string;
  uri: string;
  headers: SipHeaders;
  body: string;
}

export interface SipResponse {
  kind: 'response';
  status: number;
  reason: string;
  headers: SipHeaders;
  body: string;
}

export type SipMessage = SipRequest | SipResponse;

/** Header name (canonical form) → values in the order they came; comma lists are not split. */
export type SipHeaders = Map<string, string[]>;

/** RFC 3261 §7.3.3 compact forms, and the canonical spelling of the headers we write. */
const COMPACT: Record<string, string> = {
  i: 'Call-ID', m: 'Contact', e: 'Content-Encoding', l: 'Content-Length', c: 'Content-Type',
  f: 'From', s: 'Subject', k: 'Supported', t: 'To', v: 'Via',
};
const CANONICAL: Record<string, string> = {
  'call-id': 'Call-ID', cseq: 'CSeq', 'www-authenticate': 'WWW-Authenticate', via: 'Via', from: 'From', to: 'To',
  contact: 'Contact', 'content-length': 'Content-Length', 'content-type': 'Content-Type', 'max-forwards': 'Max-Forwards',
  authorization: 'Authorization', 'user-agent': 'User-Agent', allow: 'Allow', supported: 'Supported', 'record-route': 'Record-Route',
};

export function canonicalHeader(name: string): string {
  const lower = name.toLowerCase();
  if (lower.length === 1 && COMPACT[lower]) return COMPACT[lower];
  return CANONICAL[lower] ?? lower.replace(/(^|-)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase());
}

/** The most a datagram can carry; bigger input is not a SIP message we accept. */
export const MAX_MESSAGE_BYTES = 65_535;
const TOKEN = /^[!%*+\-.`'~\w]+$/;

/** Parses one SIP message (a UDP datagram). Undefined when it is not well-formed. */
export function parseMessage(input: Buffer | string): SipMessage | undefined {
  if (input.length > MAX_MESSAGE_BYTES) return undefined;
  const text = typeof input === 'string' ? input : input.toString('utf8');
  const split = text.indexOf('\r\n\r\n');
  // Bare LF line ends are tolerated (RFC 3261 §7.5 asks for CRLF; some clients are sloppy).
  const lfSplit = split < 0 ? text.indexOf('\n\n') : -1;
  if (split < 0 && lfSplit < 0) return undefined;
  const head = split >= 0 ? text.slice(0, split) : text.slice(0, lfSplit);
  let body = split >= 0 ? text.slice(split + 4) : text.slice(lfSplit + 2);
  const lines = head.split(/\r?\n/);
  const start = lines.shift() ?? '';
  const headers: SipHeaders = new Map();
  let last: { name: string; index: number } | undefined;
  for (const line of lines) {
    if (line.length === 0) return undefined;
    if (line[0] === ' ' || line[0] === '\t') {
      // A folded continuation of the previous header (§7.3.1).
      if (!last) return undefined;
      const values = headers.get(last.name)!;
      values[last.index] = `${values[last.index]} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const rawName = line.slice(0, colon).trim();
    if (!TOKEN.test(rawName)) return undefined;
    const name = canonicalHeader(rawName);
    const values = headers.get(name) ?? [];
    values.push(line.slice(colon + 1).trim());
    headers.set(name, values);
    last = { name, index: values.length - 1 };
  }
  const lengthHeader = headers.get('Content-Length')?.[0];
  if (lengthHeader !== undefined) {
    if (!/^\d{1,5}$/.test(lengthHeader)) return undefined;
    const length = Number(lengthHeader);
    const bytes = Buffer.from(body, 'utf8');
    if (bytes.length < length) return undefined; // truncated datagram
    body = bytes.subarray(0, length).toString('utf8');
  }
  const response = /^SIP\/2\.0 ([1-6]\d\d) ?(.*)$/.exec(start);
  if (response) return { kind: 'response', status: Number(response[1]), reason: response[2] ?? '', headers, body };
  const request = /^([A-Z!%*+\-.`'~\w]+) (\S+) SIP\/2\.0$/.exec(start);
  if (!request) return undefined;
  return { kind: 'request', method: request[1]!, uri: request[2]!, headers, body };
}

export function header(msg: { headers: SipHeaders }, name: string): string | undefined {
  return msg.headers.get(canonicalHeader(name))?.[0];
}

/** Writes a message; Content-Length is always set from the body. */
export function serializeMessage(msg: SipMessage): string {
  const start = msg.kind === 'request' ? `${msg.method} ${msg.uri} SIP/2.0` : `SIP/2.0 ${msg.status} ${msg.reason}`;
  const lines = [start];
  for (const [name, values] of msg.headers) {
    if (name === 'Content-Length') continue;
    for (const v of values) lines.push(`${name}: ${v}`);
  }
  lines.push(`Content-Length: ${Buffer.byteLength(msg.body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${msg.body}`;
}

/** `;name=value` parameters after the first `;` (lower-cased names; a flag has value ''). */
export function parseParams(text: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const part of text.split(';').slice(1)) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (name) params.set(name, eq < 0 ? '' : part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
  }
  return params;
}

export interface NameAddr {
  display: string;
  uri: string;
  /** Header parameters after the URI (tag). */
  params: Map<string, string>;
}

/** From/To/Contact: `"Name" <sip:user@host>;tag=x` or `sip:user@host;tag=x`. */
export function parseNameAddr(value: string | undefined): NameAddr | undefined {
  if (!value) return undefined;
  const lt = value.indexOf('<');
  if (lt >= 0) {
    const gt = value.indexOf('>', lt);
    if (gt < 0) return undefined;
    return { display: value.slice(0, lt).trim().replace(/^"(.*)"$/, '$1'), uri: value.slice(lt + 1, gt).trim(), params: parseParams(value.slice(gt + 1)) };
  }
  const semi = value.indexOf(';');
  const uri = (semi < 0 ? value : value.slice(0, semi)).trim();
  if (!uri) return undefined;
  return { display: '', uri, params: parseParams(semi < 0 ? '' : value.slice(semi)) };
}

export interface SipUri {
  user: string;
  host: string;
  port: number | undefined;
}

/** `sip:user@host:port;params` (sips: and tel: user parts too); the user part percent-decoded. */
export function parseUri(uri: string): SipUri | undefined {
  const m = /^(?:sips?|tel):(?:([^@;?]*)@)?([^;?:]+|\[[^\]]+\])(?::(\d{1,5}))?/i.exec(uri.trim());
  if (!m) return undefined;
  let user = m[1] ?? '';
  try {
    user = decodeURIComponent(user);
  } catch {
    // not percent-encoded after all: keep it as written
  }
  const port = m[3] ? Number(m[3]) : undefined;
  if (port !== undefined && (port < 1 || port > 65535)) return undefined;
  return { user, host: m[2]!, port };
}

/** The branch of the top Via (the transaction id, RFC 3261 §17.2.3). */
export function topViaBranch(msg: { headers: SipHeaders }): string | undefined {
  const via = msg.headers.get('Via')?.[0];
  if (!via) return undefined;
  return parseParams(via.split(',')[0]!).get('branch');
}

/** CSeq number and method; undefined when malformed. */
export function parseCSeq(msg: { headers: SipHeaders }): { seq: number; method: string } | undefined {
  const m = /^(\d{1,10})\s+([A-Z]+)$/i.exec(header(msg, 'CSeq') ?? '');
  return m ? { seq: Number(m[1]), method: m[2]!.toUpperCase() } : undefined;
}

/** A response to a request: Via, From, To (with our tag), Call-ID and CSeq copied (§8.2.6). */
export function responseTo(req: SipRequest, status: number, reason: string, opts: { toTag?: string; headers?: [string, string][]; body?: string } = {}): SipResponse {
  const headers: SipHeaders = new Map();
  for (const name of ['Via', 'From', 'To', 'Call-ID', 'CSeq']) {
    const values = req.headers.get(name);
    if (values) headers.set(name, [...values]);
  }
  const to = headers.get('To')?.[0];
  if (to && opts.toTag && !parseNameAddr(to)?.params.has('tag')) headers.set('To', [`${to};tag=${opts.toTag}`]);
  for (const [name, value] of opts.headers ?? []) headers.set(name, [...(headers.get(name) ?? []), value]);
  return { kind: 'response', status, reason, headers, body: opts.body ?? '' };
}
