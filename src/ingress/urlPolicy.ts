// Where a URL ingress may connect. A CreateIngress caller chooses the URL and the gateway's FFmpeg
// fetches it, so without a policy any `ingressAdmin` token reads the gateway's own network:
// loopback services, cloud metadata, private hosts. Special-use addresses (loopback, RFC 1918,
// ULA, link-local, unspecified, CGNAT, multicast, documentation and reserved ranges, and IPv6
// forms that embed one of them) are refused unless the operator allow-lists them
// (`ingress.url_allow`: addresses, CIDR ranges or host names). Every address a name resolves to is
// checked, and the connection goes to the checked address, so DNS cannot answer differently the
// second time (rebinding).
import dns from 'node:dns/promises';
import net from 'node:net';

const V4_SPECIAL: [string, number, string][] = [
  ['0.0.0.0', 8, 'unspecified ("this network")'],
  ['10.0.0.0', 8, 'private (RFC 1918)'],
  ['100.64.0.0', 10, 'shared address space (CGNAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private (RFC 1918)'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, '6to4 relay anycast'],
  ['192.168.0.0', 16, 'private (RFC 1918)'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];
const V6_SPECIAL: [string, number, string][] = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['100::', 64, 'discard-only'],
  ['2001::', 23, 'IETF protocol assignments (Teredo, ORCHID, …)'],
  ['2001:db8::', 32, 'documentation'],
  ['2002::', 16, '6to4'],
  ['fc00::', 7, 'unique local (ULA)'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local'],
  ['ff00::', 8, 'multicast'],
];

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64), if any. */
function embeddedV4(ip: string): string | undefined {
  const words = expandV6(ip);
  if (!words) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (n: number) => words.slice(0, n).every((w) => w === 0);
  if (zero(5) && words[5] === 0xffff) return v4(words[6]!, words[7]!); // ::ffff:a.b.c.d
  if (zero(6) && (words[6] !== 0 || words[7]! > 1)) return v4(words[6]!, words[7]!); // ::a.b.c.d (deprecated)
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0)) return v4(words[6]!, words[7]!); // NAT64
  return undefined;
}

function expandV6(ip: string): number[] | undefined {
  if (!net.isIPv6(ip)) return undefined;
  let text = ip.split('%')[0]!;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -dotted[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (s: string) => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  const fill = tail === undefined ? [] : new Array<number>(8 - h.length - t.length).fill(0);
  const words = [...h, ...fill, ...t];
  return words.length === 8 ? words : undefined;
}

const special = new Map<string, net.BlockList>();
for (const [addr, prefix, what] of [...V4_SPECIAL, ...V6_SPECIAL]) {
  const list = special.get(what) ?? new net.BlockList();
  list.addSubnet(addr, prefix, net.isIPv6(addr) ? 'ipv6' : 'ipv4');
  special.set(what, list);
}

/** What kind of special-use address `ip` is, or undefined for an ordinary public address. */
export function specialUse(ip: string): string | undefined {
  const family = net.isIPv4(ip) ? 'ipv4' : net.isIPv6(ip) ? 'ipv6' : undefined;
  if (!family) return 'not an IP address';
  if (family === 'ipv4' && ip === '255.255.255.255') return 'broadcast';
  const v4 = family === 'ipv6' ? embeddedV4(ip) : undefined;
  if (v4) {
    const inner = specialUse(v4);
    return inner ? `${inner}, embedded in IPv6` : undefined;
  }
  for (const [what, list] of special) if (list.check(ip.split('%')[0]!, family)) return what;
  return undefined;
}

export class UrlRefusedError extends Error {
  override name = 'UrlRefusedError';
}

/** The operator's exceptions: addresses, CIDR ranges and host names (case-insensitive, exact). */
export class UrlPolicy {
  readonly #ranges = new net.BlockList();
  readonly #hosts = new Set<string>();
  readonly #lookup: (host: string) => Promise<string[]>;

  constructor(allow: string[], lookup?: (host: string) => Promise<string[]>) {
    for (const entry of allow) {
      const [addr, bits] = entry.split('/') as [string, string | undefined];
      const family = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : undefined;
      if (family) this.#ranges.addSubnet(addr, bits === undefined ? (family === 'ipv4' ? 32 : 128) : Number(bits), family);
      else this.#hosts.add(entry.toLowerCase().replace(/\.$/, ''));
    }
    this.#lookup = lookup ?? (async (host) => (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address));
  }

  /** Checks one address; throws UrlRefusedError naming the range (for the server log, not the caller). */
  checkAddress(ip: string, host = ip): void {
    const what = specialUse(ip);
    if (!what) return;
    const family = net.isIPv4(ip) ? 'ipv4' : 'ipv6';
    if (this.#ranges.check(ip.split('%')[0]!, family)) return;
    const v4 = family === 'ipv6' ? embeddedV4(ip) : undefined;
    if (v4 && this.#ranges.check(v4, 'ipv4')) return;
    throw new UrlRefusedError(`${host} resolves to ${ip}, a ${what} address (not in ingress.url_allow)`);
  }

  /**
   * Resolves `host` and checks every address it has; returns the one to connect to. A host name
   * on the allow-list is trusted whatever it resolves to.
   */
  async resolve(host: string): Promise<string> {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    const addresses = net.isIP(bare) ? [bare] : await this.#lookup(bare).catch((err: Error) => {
      throw new UrlRefusedError(`${host} does not resolve: ${err.message}`);
    });
    if (addresses.length === 0) throw new UrlRefusedError(`${host} has no address`);
    if (!this.#hosts.has(bare.toLowerCase().replace(/\.$/, ''))) for (const ip of addresses) this.checkAddress(ip, host);
    return addresses[0]!;
  }
}
