// The console's flow from a shell: `roomgate room|ingress|egress|dispatch` (bin/roomgate.mjs, on
// livekit-server-sdk) against a gateway started with `roomgate start`: create a room and an RTMP
// ingress, push FFmpeg to the printed OBS settings, see the participant, record it with
// `egress start --wait` (progress lines), list, dispatch an agent, and the errors people make.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { RoomServiceClient } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchFfmpeg, type FfmpegProcess } from '../../src/media/ffmpeg.ts';
import { API_KEY, API_SECRET } from '../helpers/gateway.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { BIN, cleanEnv, spawnGateway, type SpawnedGateway } from '../helpers/spawnGateway.ts';

let gw: SpawnedGateway;
let pusher: FfmpegProcess | undefined;

beforeAll(async () => {
  gw = await spawnGateway({ ROOMGATE_EGRESS_PROGRESS_INTERVAL: '1' });
}, 120_000);

afterAll(async () => {
  await pusher?.stop(2000);
  await gw?.stop();
});

/** Runs the CLI with the server and credentials in LIVEKIT_* (as `lk` users set them). */
function cli(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: cleanEnv({ LIVEKIT_URL: gw.url.replace('http://', 'ws://'), LIVEKIT_API_KEY: API_KEY, LIVEKIT_API_SECRET: API_SECRET }),
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('roomgate CLI operations', () => {
  it('runs the ingest-and-record flow from a shell', async () => {
    expect(cli(['room', 'create', 'demo']).stdout).toMatch(/^room demo RM_\w+\n$/);
    const list = cli(['room', 'list']);
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME\s+SID\s+PARTICIPANTS\s+PUBLISHERS\s+CREATED$/);
    expect(list.stdout).toMatch(/^demo\s+RM_\w+\s+0\s+0\s+\d{4}-/m);

    const created = cli(['ingress', 'create', '--type', 'rtmp', '--room', 'demo', '--identity', 'cam']);
    expect(created.code).toBe(0);
    const server = /^ {2}Server: +(\S+)$/m.exec(created.stdout)![1]!;
    const key = /^ {2}Stream Key: +(\S+)$/m.exec(created.stdout)![1]!;
    expect(server).toBe(`rtmp://127.0.0.1:${gw.rtmpPort}/live`);
    expect(created.stdout).toContain('Service:     Custom...');

    pusher = launchFfmpeg([
      '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-c:v', 'libx264', '-preset', 'veryfast', '-g', '60', '-b:v', '800k', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
      '-f', 'flv', `${server}/${key}`,
    ]);
    // Waiting in-process (a CLI call per poll is slow on a busy machine); then the CLI shows it.
    const rooms = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
    await waitFor(async () => ((await rooms.listParticipants('demo')).find((p) => p.identity === 'cam' && p.tracks.length === 2) ? true : undefined), 60_000, 'the ingress participant with two tracks');
    const parts = JSON.parse(cli(['room', 'participants', 'demo', '--json']).stdout) as { identity: string; kind?: string }[];
    expect(parts).toEqual([expect.objectContaining({ identity: 'cam', kind: 'INGRESS' })]);
    expect(cli(['room', 'participants', 'demo']).stdout).toMatch(/^cam\s+ingress\s+\S+\s+.*video video\/H264 640x360/m);

    const ingresses = cli(['ingress', 'list', '--room', 'demo']);
    expect(ingresses.stdout).toMatch(/^IN_\w+\s+rtmp\s+demo\s+cam\s+PUBLISHING\s+640x360/m);
    expect(ingresses.stdout).not.toContain(key); // a publishing credential: shown once, at create

    // Record the participant, waiting with progress lines (stderr is not a TTY: one per change).
    const rec = spawn(process.execPath, [BIN, 'egress', 'start', 'participant', '--room', 'demo', '--identity', 'cam', '--file', 'cli/demo.mp4', '--wait', '--duration', '5'], {
      env: cleanEnv({ LIVEKIT_URL: gw.url, LIVEKIT_API_KEY: API_KEY, LIVEKIT_API_SECRET: API_SECRET }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    rec.stdout.on('data', (d: Buffer) => (out += d.toString()));
    rec.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => rec.once('exit', resolve));
    expect(code, err).toBe(0);
    const progress = err.split('\n').filter((l) => / ACTIVE /.test(l));
    expect(progress.length, err).toBeGreaterThan(1);
    expect(progress.at(-1)).toMatch(/^EG_\w+ {2}ACTIVE {2}[1-9]\d*\.\d s {2}\d+(\.\d)? (KiB|MiB)$/);
    const final = /^(EG_\w+) {2}COMPLETE {2}\d+\.\d s {2}\S+ \S+ {2}(\/\S+\.mp4)$/m.exec(out)!;
    expect(final, out).not.toBeNull();
    expect(fs.statSync(final[2]!).size).toBeGreaterThan(10_000);

    const egresses = JSON.parse(cli(['egress', 'list', '--room', 'demo', '--json']).stdout) as { egressId: string; status: string }[];
    expect(egresses).toEqual([expect.objectContaining({ egressId: final[1], status: 'EGRESS_COMPLETE' })]);
    expect(cli(['egress', 'list']).stdout).toMatch(new RegExp(`^${final[1]}\\s+participant\\s+demo\\s+COMPLETE`, 'm'));

    expect(cli(['dispatch', 'create', '--room', 'demo', '--agent', 'helper', '--metadata', 'hi']).stdout).toMatch(/^dispatch AD_\w+ of helper to demo$/m);
    expect(cli(['dispatch', 'list', '--room', 'demo']).stdout).toMatch(/^AD_\w+\s+helper\s+demo\s+\d+\s+hi$/m);

    await pusher.stop(2000);
    expect(cli(['room', 'delete', 'demo']).stdout).toBe('room demo deleted\n');
  }, 240_000);

  it('says what is wrong with bad input, without a stack trace', async () => {
    const badType = cli(['ingress', 'create', '--type', 'ftp', '--room', 'r', '--identity', 'i']);
    expect(badType.code).toBe(2);
    expect(badType.stderr).toBe("roomgate: --type must be rtmp, whip or url, got 'ftp'\n");

    const missing = cli(['egress', 'stop', 'EG_doesnotexist']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("roomgate: not_found: egress 'EG_doesnotexist' does not exist (HTTP 404)\n");

    const unknownFlag = cli(['room', 'list', '--colour']);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toMatch(/^roomgate: Unknown option '--colour'/);

    const closed = await freePort();
    const unreachable = spawnSync(process.execPath, [BIN, 'room', 'list', '--url', `http://127.0.0.1:${closed}`, '--api-key', API_KEY, '--api-secret', API_SECRET], { env: cleanEnv({}), encoding: 'utf8' });
    expect(unreachable.status).toBe(1);
    expect(unreachable.stderr).toMatch(/^roomgate: cannot reach the server: .*ECONNREFUSED.* \(set --url or LIVEKIT_URL\)\n$/);

    const wrongSecret = spawnSync(process.execPath, [BIN, 'room', 'list', '--url', gw.url, '--api-key', API_KEY, '--api-secret', 'wrong-secret-wrong-secret-wrong-secret'], { env: cleanEnv({}), encoding: 'utf8' });
    expect(wrongSecret.status).toBe(1);
    expect(wrongSecret.stderr).toMatch(/^roomgate: unauthenticated: .*\(HTTP 401\)\n$/);
  }, 60_000);
});
