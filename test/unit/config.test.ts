import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { deriveWorkerSecret } from '../../src/auth/workerCredential.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';

function yamlFile(text: string): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-cfg-')), 'roomgate.yaml');
  fs.writeFileSync(file, text);
  return file;
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('has embedded defaults: loopback, 7880/1935, dev key', () => {
    const c = loadConfig({ env: {} });
    expect(c.port).toBe(7880);
    expect(c.bind).toBe('127.0.0.1');
    expect(c.rtmp.port).toBe(1935);
    expect(c.rtc.min_port).toBeLessThan(c.rtc.max_port);
    expect(c.rtc.workers).toBe(os.availableParallelism());
    expect(c.rtc.consumers_per_worker).toBe(500);
    expect(c.keys).toEqual({ devkey: 'secret' });
    expect(c.dev_keys).toBe(true);
    expect(c.redis.url).toBeUndefined();
    expect(c.webhook.urls).toEqual([]);
  });

  it('reads every documented env var', () => {
    const c = loadConfig({
      env: {
        ROOMGATE_PORT: '9000',
        ROOMGATE_BIND: '0.0.0.0',
        ROOMGATE_RTMP_PORT: '1936',
        ROOMGATE_RTC_MIN_PORT: '50000',
        ROOMGATE_RTC_MAX_PORT: '50100',
        ROOMGATE_ANNOUNCED_IP: '203.0.113.7',
        ROOMGATE_RTC_CONSUMERS_PER_WORKER: '40',
        ROOMGATE_API_KEY: 'k1',
        ROOMGATE_API_SECRET: 's1',
        ROOMGATE_REDIS_URL: 'redis://10.0.0.2:6379/1',
        ROOMGATE_WEBHOOK_URLS: 'http://a.example/hook, https://b.example/x',
        ROOMGATE_ROOM_EMPTY_TIMEOUT: '60',
      },
    });
    expect(c).toMatchObject({
      port: 9000,
      bind: '0.0.0.0',
      rtmp: { port: 1936 },
      rtc: { min_port: 50000, max_port: 50100, announced_ip: '203.0.113.7', consumers_per_worker: 40 },
      keys: { k1: 's1' },
      dev_keys: false,
      redis: { url: 'redis://10.0.0.2:6379/1' },
      webhook: { urls: ['http://a.example/hook', 'https://b.example/x'] },
      room: { empty_timeout: 60 },
    });
  });

  it('gives egress workers their own credential: derived from the first API secret, or set', () => {
    const derived = loadConfig({ env: { ROOMGATE_API_KEY: 'k1', ROOMGATE_API_SECRET: 's1' } }).egress.worker_secret;
    expect(derived).toBe(deriveWorkerSecret('s1'));
    expect(derived).not.toContain('s1');
    expect(loadConfig({ env: { ROOMGATE_API_KEY: 'k1', ROOMGATE_API_SECRET: 's2' } }).egress.worker_secret).not.toBe(derived);
    const set = 'w'.repeat(40);
    const c = loadConfig({ env: { ROOMGATE_EGRESS_WORKER_SECRET: set, ROOMGATE_EGRESS_WORKER_RTP_HOSTS: '10.0.0.5, 172.28.0.0/24', ROOMGATE_EGRESS_MAX_TAP_SESSIONS: '8' } });
    expect(c.egress).toMatchObject({ worker_secret: set, worker_rtp_hosts: ['10.0.0.5', '172.28.0.0/24'], max_tap_sessions: 8 });
    expect(errorOf(() => loadConfig({ env: { ROOMGATE_EGRESS_WORKER_SECRET: 'short' } }))).toMatch(/^ROOMGATE_EGRESS_WORKER_SECRET: must be at least 32 characters/);
  });

  it('takes several key pairs from YAML, env overriding the file', () => {
    const file = yamlFile('port: 8000\nkeys:\n  k1: s1\n  k2: s2\nwebhook:\n  urls: [http://h.example/]\n  api_key: k2\n');
    const c = loadConfig({ env: { ROOMGATE_PORT: '8001', ROOMGATE_API_KEY: 'k3', ROOMGATE_API_SECRET: 's3' }, configFile: file });
    expect(c.port).toBe(8001);
    expect(c.keys).toEqual({ k1: 's1', k2: 's2', k3: 's3' });
    expect(c.webhook.api_key).toBe('k2');
    expect(c.config_file).toBe(file);
  });

  it('finds the file through ROOMGATE_CONFIG', () => {
    const file = yamlFile('rtmp:\n  port: 2935\n');
    expect(loadConfig({ env: { ROOMGATE_CONFIG: file } }).rtmp.port).toBe(2935);
  });

  it.each([
    [{ ROOMGATE_PORT: 'abc' }, /ROOMGATE_PORT: expected an integer, got 'abc'/],
    [{ ROOMGATE_PORT: '70000' }, /ROOMGATE_PORT: .*65535.*got '70000'/],
    [{ ROOMGATE_PORT: '' }, /ROOMGATE_PORT: expected an integer/],
    [{ ROOMGATE_RTC_MIN_PORT: '50000', ROOMGATE_RTC_MAX_PORT: '40000' }, /ROOMGATE_RTC_MIN_PORT: must not be above ROOMGATE_RTC_MAX_PORT/],
    [{ ROOMGATE_ANNOUNCED_IP: 'example.com' }, /ROOMGATE_ANNOUNCED_IP: must be an IPv4 or IPv6 address/],
    [{ ROOMGATE_REDIS_URL: 'http://x' }, /ROOMGATE_REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/],
    [{ ROOMGATE_WEBHOOK_URLS: 'ftp://x.example/' }, /ROOMGATE_WEBHOOK_URLS.*http:\/\/ or https:\/\//],
    [{ ROOMGATE_LOG_LEVEL: 'loud' }, /ROOMGATE_LOG_LEVEL/],
    [{ ROOMGATE_PROT: '1' }, /ROOMGATE_PROT: unknown setting/],
    [{ ROOMGATE_API_KEY: 'k' }, /ROOMGATE_API_KEY and ROOMGATE_API_SECRET must be set together/],
    [{ ROOMGATE_BIND: '0.0.0.0' }, /refusing to listen on non-loopback address '0.0.0.0' with the built-in dev API key/],
    [{ ROOMGATE_TURN_URLS: 'turn:t.example:3478' }, /ROOMGATE_TURN_SECRET \(turn.secret\): required when TURN URLs are configured/],
    [{ ROOMGATE_TURN_URLS: 'http://t.example' }, /ROOMGATE_TURN_URLS: must be a turn: or turns: URL/],
    [{ ROOMGATE_STUN_URLS: 'turn:x' }, /ROOMGATE_STUN_URLS: must be a stun: or stuns: URL/],
    [{ ROOMGATE_RTC_CONSUMERS_PER_WORKER: '0' }, /ROOMGATE_RTC_CONSUMERS_PER_WORKER/],
  ])('rejects %o naming the setting', (env, message) => {
    expect(errorOf(() => loadConfig({ env }))).toMatch(message);
  });

  it('names the file and key for bad YAML values', () => {
    const file = yamlFile('rtc:\n  min_port: "low"\n  colour: blue\n');
    const msg = errorOf(() => loadConfig({ env: {}, configFile: file }));
    expect(msg).toContain(`config file ${file}: rtc.min_port`);
    expect(msg).toMatch(/unknown setting\(s\) colour/);
  });

  it('rejects unreadable and non-YAML files and a webhook key that is not configured', () => {
    expect(errorOf(() => loadConfig({ env: {}, configFile: '/nonexistent/roomgate.yaml' }))).toMatch(/cannot be read/);
    expect(errorOf(() => loadConfig({ env: {}, configFile: yamlFile('port: [1, 2\n') }))).toMatch(/not valid YAML/);
    expect(errorOf(() => loadConfig({ env: {}, configFile: yamlFile('- a\n- b\n') }))).toMatch(/mapping/);
    expect(
      errorOf(() => loadConfig({ env: { ROOMGATE_WEBHOOK_API_KEY: 'nokey', ROOMGATE_API_KEY: 'k', ROOMGATE_API_SECRET: 's' } })),
    ).toMatch(/ROOMGATE_WEBHOOK_API_KEY: 'nokey' is not one of the configured keys/);
  });
});
