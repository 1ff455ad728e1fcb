// Fan-out through Janus (Debian's `janus`, streaming plugin), beside bench/fanout.ts: the same
// 720p30 2 Mb/s clip sent by FFmpeg as RTP to a streaming mountpoint, N WebRTC viewers set up over
// Janus's HTTP API (create, attach janus.plugin.streaming, watch, answer, start). The viewers live
// in one child process (bench/janus-viewers.ts) on one UDP socket, like the roomgate side's
// receiver, so their CPU is a column of its own and never the SFU's. Janus runs from a config
// folder made here: HTTP transport on a free port, only the streaming plugin.
//
// Janus never gathers ICE candidates on a loopback interface (ice.c skips IFF_LOOPBACK), so on a
// host whose other interface is real it would offer that one. This side of the bench therefore
// runs in a network namespace of its own (`unshare -n`, root): Janus, FFmpeg and the viewers see only
// `lo` and a veth pair carrying 127.0.0.2, which Janus is told to use (ice_enforce_list). Every
// packet stays on 127.0.0.0/8 inside that namespace; nothing on the host's network changes.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sdpTransform from 'sdp-transform';
import { launchFfmpeg, type FfmpegProcess } from '../src/media/ffmpeg.ts';
import { freePort } from '../test/helpers/net.ts';
import { clip, cpuSeconds, machineBusySeconds } from './fanout.ts';
import type { ViewerCommand, ViewerCounts } from './janus-viewers.ts';

export interface JanusFanoutRow {
  subscribers: number;
  /** Viewers whose DTLS handshake finished. */
  connected: number;
  /** Viewers that received media in the window. */
  receiving: number;
  /** CPU of the janus process, all its threads (cores). */
  janusCpu: number;
  /** CPU of the viewers' process (cores): not the SFU's. */
  receiverCpu: number;
  receivedPerSubscriberPps: number;
  /** Packets missing by the viewers' sequence numbers, of those expected (end to end). */
  lossPct: number;
  lossyViewers: number;
  /** Cores busy on the whole machine in the window (this bench and everything else running). */
  machineBusy: number;
}

const JANUS_LIB = '/usr/lib/x86_64-linux-gnu/janus';
/** Janus's ICE address inside the namespace: loopback range, on a non-loopback (veth) interface. */
const JANUS_ICE_IP = '127.0.0.2';
/** The viewers' address: libnice's checks from JANUS_ICE_IP to 127.0.0.1 (on lo) fail at send. */
const VIEWER_IP = JANUS_ICE_IP;
const ROWS_PREFIX = 'JANUS_FANOUT_ROWS ';
const MOUNTPOINT = 1;

/** Janus's own folder of plugins: the bench links in only what it loads. */
function janusLibDir(): string {
  for (const dir of [JANUS_LIB, '/usr/lib/janus', '/usr/local/lib/janus', '/opt/janus/lib/janus']) {
    if (fs.existsSync(path.join(dir, 'plugins', 'libjanus_streaming.so'))) return dir;
  }
  throw new Error('janus is not installed (Debian: apt-get install janus): no libjanus_streaming.so found');
}

interface Janus {
  url: string;
  /** The generated config folder (removed by stop). */
  dir: string;
  proc: ChildProcess;
  rtpPort: number;
  logTail(): string;
  stop(): Promise<void>;
}

async function startJanus(): Promise<Janus> {
  const lib = janusLibDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-janus-'));
  for (const [sub, file] of [['plugins', 'libjanus_streaming.so'], ['transports', 'libjanus_http.so']] as const) {
    fs.mkdirSync(path.join(dir, sub));
    fs.symlinkSync(path.join(lib, sub, file), path.join(dir, sub, file));
  }
  fs.mkdirSync(path.join(dir, 'events'));
  fs.mkdirSync(path.join(dir, 'loggers'));
  const httpPort = await freePort();
  const rtpPort = await freePort();
  const eventLoops = process.env.ROOMGATE_BENCH_JANUS_EVENT_LOOPS;
  fs.writeFileSync(
    path.join(dir, 'janus.jcfg'),
    `general: {
  configs_folder = "${dir}"
  plugins_folder = "${dir}/plugins"
  transports_folder = "${dir}/transports"
  events_folder = "${dir}/events"
  loggers_folder = "${dir}/loggers"
  debug_level = 3
  session_timeout = 60
${eventLoops ? `  event_loops = ${Number(eventLoops)}\n` : ''}}
media: {
  rtp_port_range = "50000-59999"
}
nat: {
  ice_enforce_list = "${JANUS_ICE_IP}"
}
events: {
  broadcast = false
}
`,
  );
  fs.writeFileSync(
    path.join(dir, 'janus.transport.http.jcfg'),
    `general: {
  json = "plain"
  base_path = "/janus"
  http = true
  port = ${httpPort}
  ip = "127.0.0.1"
  https = false
}
admin: {
  admin_http = false
}
`,
  );
  fs.writeFileSync(
    path.join(dir, 'janus.plugin.streaming.jcfg'),
    `general: {
  events = false
}
bench: {
  type = "rtp"
  id = ${MOUNTPOINT}
  description = "roomgate bench"
  audio = false
  video = true
  videoport = ${rtpPort}
  videoiface = "127.0.0.1"
  videopt = 102
  videocodec = "h264"
  videofmtp = "profile-level-id=42e01f;packetization-mode=1"
}
`,
  );
  const proc = spawn('janus', ['-C', path.join(dir, 'janus.jcfg'), '-F', dir, '-o'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-8000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const janus: Janus = {
    url: `http://127.0.0.1:${httpPort}/janus`,
    dir,
    proc,
    rtpPort,
    logTail: () => log,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`janus exited at start: ${log}`);
      try {
        const res = await fetch(`${janus.url}/info`);
        if (res.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`janus did not answer on ${janus.url}: ${log}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch (err) {
    await janus.stop();
    throw err;
  }
  return janus;
}

interface JanusMessage {
  janus: string;
  transaction?: string;
  sender?: number;
  session_id?: number;
  data?: { id: number };
  error?: { code: number; reason: string };
  plugindata?: { data: { streaming?: string; error?: string; result?: { status?: string } } };
  jsep?: { type: string; sdp: string };
}

/** One Janus session over the HTTP API: requests, and plugin events by handle from a long poll. */
class JanusSession {
  #waiters = new Map<number, Array<(m: JanusMessage) => boolean>>();
  #closed = false;
  #polling: Promise<void> | undefined;
  #keepalive: NodeJS.Timeout | undefined;

  private constructor(
    readonly url: string,
    readonly id: number,
  ) {}

  static async create(url: string): Promise<JanusSession> {
    const res = await post(url, { janus: 'create' });
    const s = new JanusSession(url, res.data!.id);
    s.#polling = s.#poll();
    // Janus drops a session after session_timeout (60 s) without a request.
    s.#keepalive = setInterval(() => {
      post(`${url}/${s.id}`, { janus: 'keepalive' }).catch((err: unknown) => console.error('janus keepalive', err));
    }, 20_000);
    return s;
  }

  async #poll(): Promise<void> {
    while (!this.#closed) {
      let events: JanusMessage[];
      try {
        const res = await fetch(`${this.url}/${this.id}?maxev=100&rid=${Date.now()}`);
        const body = (await res.json()) as JanusMessage | JanusMessage[];
        events = Array.isArray(body) ? body : [body];
      } catch (err) {
        if (!this.#closed) console.error('janus long poll', err);
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      for (const m of events) {
        if (m.sender === undefined) continue;
        const list = this.#waiters.get(m.sender) ?? [];
        this.#waiters.set(
          m.sender,
          list.filter((w) => !w(m)),
        );
      }
    }
  }

  /** The next event from `handle` that `match` accepts. */
  event(handle: number, match: (m: JanusMessage) => boolean, what: string, timeoutMs = 30_000): Promise<JanusMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`janus handle ${handle}: no ${what} in ${timeoutMs} ms`)), timeoutMs);
      const list = this.#waiters.get(handle) ?? [];
      list.push((m) => {
        if (m.janus === 'event' && m.plugindata?.data.error) {
          clearTimeout(timer);
          reject(new Error(`janus handle ${handle}: ${m.plugindata.data.error}`));
          return true;
        }
        if (!match(m)) return false;
        clearTimeout(timer);
        resolve(m);
        return true;
      });
      this.#waiters.set(handle, list);
    });
  }

  async attach(): Promise<number> {
    const res = await post(`${this.url}/${this.id}`, { janus: 'attach', plugin: 'janus.plugin.streaming' });
    return res.data!.id;
  }

  message(handle: number, body: Record<string, unknown>, jsep?: { type: string; sdp: string; trickle?: boolean }): Promise<JanusMessage> {
    return post(`${this.url}/${this.id}/${handle}`, { janus: 'message', body, ...(jsep ? { jsep } : {}) });
  }

  async destroy(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#keepalive);
    await post(`${this.url}/${this.id}`, { janus: 'destroy' }).catch(() => undefined);
    await this.#polling;
  }
}

async function post(url: string, msg: Record<string, unknown>): Promise<JanusMessage> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify({ ...msg, transaction: randomBytes(6).toString('hex') }) });
  const body = (await res.json()) as JanusMessage;
  if (body.janus === 'error') throw new Error(`janus ${String(msg.janus)}: ${body.error?.code} ${body.error?.reason}`);
  return body;
}

/** The viewer's answer: receive-only, every offered codec taken as offered, ICE-lite, DTLS client. */
function answer(offer: string, ice: { ufrag: string; pwd: string }, fingerprint: string, port: number, ip = VIEWER_IP): string {
  const o = sdpTransform.parse(offer);
  const mids = o.media.map((m) => String(m.mid));
  const lines = ['v=0', `o=- ${Date.now()} 1 IN IP4 ${ip}`, 's=-', 't=0 0', 'a=ice-lite', `a=group:BUNDLE ${mids.join(' ')}`, 'a=msid-semantic: WMS'];
  for (const m of o.media) {
    if (m.type !== 'audio' && m.type !== 'video') {
      lines.push(`m=${m.type} 0 ${m.protocol} ${m.payloads ?? ''}`.trim(), `c=IN IP4 ${ip}`, `a=mid:${m.mid}`);
      continue;
    }
    lines.push(
      `m=${m.type} ${port} UDP/TLS/RTP/SAVPF ${m.rtp.map((r) => r.payload).join(' ')}`,
      `c=IN IP4 ${ip}`,
      `a=mid:${m.mid}`,
      'a=recvonly',
      'a=rtcp-mux',
      `a=ice-ufrag:${ice.ufrag}`,
      `a=ice-pwd:${ice.pwd}`,
      `a=fingerprint:sha-256 ${fingerprint}`,
      'a=setup:active',
    );
    for (const r of m.rtp) lines.push(`a=rtpmap:${r.payload} ${r.codec}/${r.rate}${r.encoding ? `/${r.encoding}` : ''}`);
    for (const f of m.fmtp) lines.push(`a=fmtp:${f.payload} ${f.config}`);
    lines.push(`a=candidate:1 1 udp 2130706431 ${ip} ${port} typ host`, 'a=end-of-candidates');
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * Runs the Janus side in a fresh network namespace (see the top of this file) and returns its
 * rows. Needs root, util-linux `unshare` and iproute2 `ip`, besides Debian's `janus`.
 */
export async function runJanusFanout(steps = [50, 100, 200, 500], windowS = 8): Promise<JanusFanoutRow[]> {
  janusLibDir(); // fails early, with the install hint
  const self = fileURLToPath(import.meta.url);
  const setup = [
    'ip link set lo up',
    'ip link add rgjanus0 type veth peer name rgjanus1',
    `ip addr add ${JANUS_ICE_IP}/32 dev rgjanus0`,
    'ip link set rgjanus0 up',
    'ip link set rgjanus1 up',
    `exec "${process.execPath}" --import tsx "${self}" ${steps.join(',')} ${windowS}`,
  ].join(' && ');
  const child = spawn('unshare', ['--net', 'sh', '-c', setup], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  const line = out.split('\n').find((l) => l.startsWith(ROWS_PREFIX));
  if (code !== 0 || !line) throw new Error(`janus fan-out failed (exit ${code}; needs root, unshare and ip): ${out.slice(-2000)}`);
  return JSON.parse(line.slice(ROWS_PREFIX.length)) as JanusFanoutRow[];
}

async function runJanusFanoutHere(steps: number[], windowS: number): Promise<JanusFanoutRow[]> {
  const file = await clip();
  const janus = await startJanus();
  let viewersProc: ChildProcess | undefined;
  let ff: FfmpegProcess | undefined;
  let session: JanusSession | undefined;
  // A Ctrl-C mid-run still ends Janus, FFmpeg and the viewers (the bench's children otherwise outlive it).
  const onSignal = () => {
    janus.proc.kill('SIGKILL');
    viewersProc?.kill('SIGKILL');
    if (ff) process.kill(ff.pid, 'SIGKILL');
    fs.rmSync(janus.dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const rows: JanusFanoutRow[] = [];
  try {
    const viewers = fork(fileURLToPath(new URL('./janus-viewers.ts', import.meta.url)), [VIEWER_IP], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    viewersProc = viewers;
    const connected = new Set<number>();
    let countsWaiter: ((c: ViewerCounts) => void) | undefined;
    const ready = new Promise<{ port: number; fingerprint: string }>((resolve, reject) => {
      viewers.once('exit', (code) => reject(new Error(`janus viewers exited (${code})`)));
      viewers.on('message', (m: { port?: number; fingerprint?: string; connected?: number; counts?: ViewerCounts }) => {
        if (m.port !== undefined) resolve({ port: m.port, fingerprint: m.fingerprint! });
        if (m.connected !== undefined) connected.add(m.connected);
        if (m.counts) countsWaiter?.(m.counts);
      });
    });
    const command = (cmd: ViewerCommand) => viewers.send(cmd);
    const counts = () =>
      new Promise<ViewerCounts>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('janus viewers did not report their counts')), 10_000);
        countsWaiter = (c) => {
          clearTimeout(timer);
          resolve(c);
        };
        command('counts');
      });
    const { port: viewerPort, fingerprint } = await ready;
    session = await JanusSession.create(janus.url);
    const s = session;
    let n0 = 0;
    for (const n of steps) {
      while (n0 < n) {
        const batch = Math.min(25, n - n0);
        await Promise.all(
          Array.from({ length: batch }, async (_, i) => {
            const id = n0 + i;
            const handle = await s.attach();
            const ice = { ufrag: randomBytes(4).toString('hex'), pwd: randomBytes(12).toString('hex') };
            command({ type: 'viewer', id, ...ice });
            const offered = s.event(handle, (m) => m.jsep?.type === 'offer', 'offer');
            await s.message(handle, { request: 'watch', id: MOUNTPOINT });
            const { jsep } = await offered;
            // trickle false: the answer carries its one candidate, Janus waits for no more. Not waiting
            // for the plugin's 'starting' event (once missed under load): the viewer's DTLS handshake
            // below says the PeerConnection is up, and one that never comes up counts as lost.
            await s.message(handle, { request: 'start' }, { type: 'answer', sdp: answer(jsep!.sdp, ice, fingerprint, viewerPort), trickle: false });
          }),
        );
        n0 += batch;
      }
      const deadline = Date.now() + 30_000;
      while (connected.size < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      ff = launchFfmpeg([
        '-re', '-i', file, '-an', '-c:v', 'copy', '-bsf:v', 'h264_mp4toannexb',
        '-payload_type', '102', '-ssrc', '11111111', '-f', 'rtp', `rtp://127.0.0.1:${janus.rtpPort}?pkt_size=1200`,
      ]);
      await new Promise((r) => setTimeout(r, 2000)); // as on the roomgate side: media reached every viewer
      command('reset'); // IPC keeps order: counting restarts before the window opens
      const cpu0 = { j: cpuSeconds(janus.proc.pid!), r: cpuSeconds(viewers.pid!), m: machineBusySeconds() };
      await new Promise((r) => setTimeout(r, windowS * 1000));
      // Read at once: loss comes from sequence numbers, so packets still in flight are not missing.
      const c = await counts();
      const cpu1 = { j: cpuSeconds(janus.proc.pid!), r: cpuSeconds(viewers.pid!), m: machineBusySeconds() };
      await ff.stop();
      ff = undefined;
      rows.push({
        subscribers: n,
        connected: c.connected,
        receiving: c.receiving,
        janusCpu: (cpu1.j - cpu0.j) / windowS,
        receiverCpu: (cpu1.r - cpu0.r) / windowS,
        receivedPerSubscriberPps: c.receiving > 0 ? c.received / c.receiving / windowS : 0,
        // A viewer that got nothing lost everything: an average viewer's packets, all missing.
        lossPct:
          c.expected > 0
            ? (1 - c.received / (c.expected + (n - c.receiving) * (c.expected / Math.max(1, c.receiving)))) * 100
            : 100,
        lossyViewers: c.lossyViewers + (n - c.receiving),
        machineBusy: (cpu1.m - cpu0.m) / windowS,
      });
    }
  } catch (err) {
    if (rows.length === 0) {
      console.error(`janus log tail:\n${janus.logTail()}`);
      throw err;
    }
    console.error(`fanout (janus): step ${steps[rows.length]} failed, later steps skipped: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await ff?.stop();
    await session?.destroy();
    viewersProc?.kill();
    await janus.stop();
  }
  return rows;
}

// Entry point inside the namespace: `node --import tsx bench/janus.ts 50,100 8` prints the rows.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const steps = process.argv[2]!.split(',').map(Number);
  // The bench holds our stdin open: when it ends (killed outright too), so do Janus, FFmpeg and the viewers.
  process.stdin.once('close', () => process.kill(process.pid, 'SIGTERM'));
  process.stdin.resume();
  runJanusFanoutHere(steps, Number(process.argv[3])).then(
    (rows) => {
      console.log(`${ROWS_PREFIX}${JSON.stringify(rows)}`);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
