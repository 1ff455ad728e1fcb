// The URL ingress address classifier and allow-list (issue 19, finding 6), on literal addresses
// and a stubbed resolver: nothing here opens a connection.
import { describe, expect, it } from 'vitest';
import { UrlPolicy, UrlRefusedError, specialUse } from '../../src/ingress/urlPolicy.ts';

describe('specialUse', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.1.2.3', 'private (RFC 1918)'],
    ['172.16.0.1', 'private (RFC 1918)'],
    ['172.31.255.255', 'private (RFC 1918)'],
    ['192.168.1.1', 'private (RFC 1918)'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'unspecified ("this network")'],
    ['100.64.0.1', 'shared address space (CGNAT)'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['fd12:3456::1', 'unique local (ULA)'],
    ['fe80::1', 'link-local'],
    ['::ffff:127.0.0.1', 'loopback, embedded in IPv6'],
    ['::ffff:7f00:1', 'loopback, embedded in IPv6'],
    ['::ffff:169.254.169.254', 'link-local, embedded in IPv6'],
    ['64:ff9b::10.0.0.1', 'private (RFC 1918), embedded in IPv6'],
  ])('%s is %s', (ip, what) => {
    expect(specialUse(ip)).toBe(what);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])('%s is an ordinary address', (ip) => {
    expect(specialUse(ip)).toBeUndefined();
  });
});

describe('UrlPolicy', () => {
  const resolver = (map: Record<string, string[]>) => async (host: string) => {
    const found = map[host];
    if (!found) throw new Error('ENOTFOUND');
    return found;
  };

  it('refuses a name when any of its addresses is special-use (rebinding answers mixed)', async () => {
    const policy = new UrlPolicy([], resolver({ 'media.example': ['93.184.216.34', '10.0.0.5'] }));
    await expect(policy.resolve('media.example')).rejects.toThrow(UrlRefusedError);
    await expect(policy.resolve('media.example')).rejects.toThrow(/10\.0\.0\.5, a private/);
  });

  it('returns the checked address to connect to', async () => {
    const policy = new UrlPolicy([], resolver({ 'cdn.example': ['93.184.216.34'] }));
    expect(await policy.resolve('cdn.example')).toBe('93.184.216.34');
    expect(await policy.resolve('[2606:4700::1111]')).toBe('2606:4700::1111');
  });

  it('lets the operator allow addresses, ranges and host names', async () => {
    const policy = new UrlPolicy(['127.0.0.1', '10.0.0.0/8', 'fd00::/8', 'media.internal'], resolver({ 'media.internal': ['192.168.5.5'], other: ['192.168.5.5'] }));
    expect(await policy.resolve('127.0.0.1')).toBe('127.0.0.1');
    expect(await policy.resolve('::ffff:127.0.0.1')).toBe('::ffff:127.0.0.1');
    expect(await policy.resolve('10.9.9.9')).toBe('10.9.9.9');
    expect(await policy.resolve('fd00::5')).toBe('fd00::5');
    expect(await policy.resolve('media.internal')).toBe('192.168.5.5');
    await expect(policy.resolve('other')).rejects.toThrow(UrlRefusedError);
    await expect(policy.resolve('127.0.0.2')).rejects.toThrow(/loopback/);
    await expect(policy.resolve('missing')).rejects.toThrow(/does not resolve/);
  });
});
