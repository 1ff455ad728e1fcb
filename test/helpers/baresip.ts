// baresip (Debian's `baresip`, a real softphone) as an independent SIP client: headless, with a
// config folder generated per call (loopback only, G.711 μ-law, a sine from its ausine module as
// the microphone, the far end's audio to nowhere), dialling one URI through its menu's /dial.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freeUdpPort } from './sip.ts';

export interface Baresip {
  /** Everything it printed so far (call progress: "Call established", "Call terminated"). */
  output(): string;
  /** Throws when the call is over on baresip's side (a waitFor condition that must fail fast then). */
  alive(): void;
  /** Resolves with its exit code once it ends (stop() or its `-t` limit). */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export async function runBaresip(opts: { user: string; dial: string; toneHz: number; auth?: { username: string; password: string }; quitAfterS: number }): Promise<Baresip> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-baresip-'));
  const config = [
    ['poll_method', 'poll'],
    // Bound to loopback: otherwise its SDP names the machine's first interface.
    ['net_interface', '127.0.0.1'],
    ['sip_listen', `127.0.0.1:${await freeUdpPort()}`],
    ['audio_source', `ausine,${opts.toneHz}`],
    // ausine runs at 48 kHz stereo only; baresip resamples and downmixes to the codec's 8 kHz mono.
    ['ausrc_srate', '48000'],
    ['ausrc_channels', '2'],
    ['audio_player', 'aubridge,nil'],
    ['audio_alert', 'aubridge,nil'],
    ['module_path', '/usr/lib/baresip/modules'],
    ['module', 'g711.so'],
    ['module', 'ausine.so'],
    ['module', 'aubridge.so'],
    ['module_app', 'account.so'],
    ['module_app', 'menu.so'],
  ];
  fs.writeFileSync(path.join(dir, 'config'), `${config.map(([k, v]) => `${k}\t${v}`).join('\n')}\n`);
  const auth = opts.auth ? `;auth_user=${opts.auth.username};auth_pass=${opts.auth.password}` : '';
  fs.writeFileSync(path.join(dir, 'accounts'), `<sip:${opts.user}@127.0.0.1>${auth};regint=0;audio_codecs=PCMU\n`);
  const child = spawn('baresip', ['-f', dir, '-e', `/dial ${opts.dial}`, '-t', String(opts.quitAfterS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-20_000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      fs.rmSync(dir, { recursive: true, force: true });
      resolve(code);
    });
  });
  return {
    output: () => out,
    alive: () => {
      if (/session closed|call failed/i.test(out) || child.exitCode !== null) throw new Error(`baresip's call is over:\n${out.slice(-1500)}`);
    },
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
