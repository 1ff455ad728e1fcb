// The worker side of a room composite. It polls the gateway's room snapshot (4 times a second),
// asks the layout template for a plan, and when the plan changes (join, leave, mute, screen
// share, active speaker, UpdateLayout) starts a NEW compositor FFmpeg for the new plan while the
// old one keeps feeding the outputs; the new one renders from a cut time onwards and takes over
// with its first bytes (make before break). The outputs (file, RTMP, HLS, images) read one
// continuous MPEG-TS and never see a restart: no reconnect at the destination, no broken file.
import fs from 'node:fs';
import path from 'node:path';
import { launchFfmpeg, type FfmpegProcess } from '../../media/ffmpeg.ts';
import { writeRtpInputSdp, type RtpInputStream } from '../../media/sdp.ts';
import type { Logger } from '../../logger.ts';
import type { EncodingSpec } from '../EgressTypes.ts';
import type { TapTrack } from '../EgressTaps.ts';
import type { TapClient } from '../worker/TapClient.ts';
import { udpPortPair } from '../worker/udpPorts.ts';
import { compositorArgs } from './filterGraph.ts';
import { loadLayout, resolveLayout } from './templates.ts';
import type { CompositeSource, LayoutPlan, LayoutTemplate, RoomSnapshot, Theme } from './types.ts';
import { sleep } from '../../time.ts';

/** How often the room is looked at. */
const POLL_MS = 250;
/** A new compositor renders from this long after its start: time to bind, probe and get keyframes. */
const HANDOVER_MS = 800;
/** A new compositor that has produced nothing after this long is given up (the old one goes on). */
const START_DEADLINE_MS = 8000;
/** Seconds without any RTP after which a compositor ends by itself. */
const RTP_TIMEOUT_S = 10;
const MAX_FAILED_STARTS = 4;

export interface CompositeHooks {
  egressId: string;
  roomName: string;
  source: CompositeSource;
  encoding: EncodingSpec;
  taps: TapClient;
  rtpHost: string;
  workDir: string;
  log: Logger;
  signal: AbortSignal;
  /** The outputs: every byte of the continuous MPEG-TS. */
  write(chunk: Buffer): void;
  /** The first bytes of media went out (EGRESS_ACTIVE); the media starts at `startMs` (wall clock). */
  onMedia(startMs: number): void;
}

interface Compositor {
  key: string;
  ffmpeg: FfmpegProcess;
  sessionId: string | undefined;
  startedAt: number;
  /** Wall clock (ms) from which this run renders; 0: from its first frame. */
  cutAtMs: number;
  producing: boolean;
  forwarding: boolean;
  buffered: Buffer[];
}

export class CompositeRun {
  readonly #h: CompositeHooks;
  readonly #log: Logger;
  #layoutName: string;
  #template: { layout: LayoutTemplate; theme: Theme } | undefined;
  #current: Compositor | undefined;
  #pending: Compositor | undefined;
  #retryAt = 0;
  #failedStarts = 0;
  #lastSpeakers: string[] = [];
  #seq = 0;
  readonly #t0Us = Date.now() * 1000;
  /** Why the composite ended by itself ('' while it runs). */
  endReason = '';

  constructor(hooks: CompositeHooks) {
    this.#h = hooks;
    this.#log = hooks.log.child({ composite: true });
    this.#layoutName = hooks.source.layout;
  }

  /** UpdateLayout: the next poll plans with the new template. */
  setLayout(name: string): void {
    this.#layoutName = name;
    this.#template = undefined;
  }

  async #templateNow(): Promise<{ layout: LayoutTemplate; theme: Theme }> {
    if (!this.#template) {
      const resolved = resolveLayout(this.#layoutName);
      if (!resolved) throw new Error(`layout '${this.#layoutName}' does not exist`);
      this.#template = { layout: await loadLayout(resolved), theme: resolved.theme };
      this.#log.info({ layout: resolved.name }, 'layout loaded');
    }
    return this.#template;
  }

  async run(): Promise<void> {
    const { signal } = this.#h;
    let gatewayFailures = 0;
    let lastKeepalive = 0;
    try {
      while (!signal.aborted) {
        let snap: RoomSnapshot;
        try {
          snap = await this.#h.taps.roomSnapshot(this.#h.roomName);
          gatewayFailures = 0;
        } catch (err) {
          if (++gatewayFailures > 240) throw new Error(`cannot reach the gateway: ${(err as Error).message}`);
          await sleep(POLL_MS, signal);
          continue;
        }
        if (snap.state === 'gone') {
          this.endReason = `room '${this.#h.roomName}' was closed`;
          break;
        }
        await this.#step(snap);
        if (Date.now() - lastKeepalive > 2000) {
          lastKeepalive = Date.now();
          for (const c of [this.#current, this.#pending]) if (c?.sessionId) void this.#h.taps.keepalive(c.sessionId).catch(() => undefined);
        }
        await sleep(POLL_MS, signal);
      }
    } finally {
      await this.#retire(this.#pending);
      await this.#retire(this.#current, 5000);
    }
  }

  async #step(snap: RoomSnapshot): Promise<void> {
    const { source } = this.#h;
    // Nobody publishing yet: the egress waits (STARTING) rather than recording an empty canvas.
    if (!this.#current && !this.#pending && !snap.participants.some((p) => p.tracks.length > 0)) return;
    // The active speaker stays the last one who spoke through silences.
    const present = new Set(snap.participants.map((p) => p.identity));
    if (snap.speakers.length > 0) this.#lastSpeakers = snap.speakers;
    const speakers = this.#lastSpeakers.filter((s) => present.has(s));
    const { layout, theme } = await this.#templateNow();
    const plan: LayoutPlan = source.audioOnly
      ? { background: '0x000000', cardColor: '0x000000', textColor: '0xffffff', tiles: [] }
      : layout.plan({ participants: snap.participants, speakers, width: this.#h.encoding.width, height: this.#h.encoding.height, theme });
    const videoSids = source.audioOnly ? [] : [...new Set(plan.tiles.map((t) => t.trackSid).filter((s): s is string => !!s))].slice(0, Math.max(1, layout.maxTiles));
    const audioSids = source.videoOnly ? [] : snap.participants.flatMap((p) => p.tracks.filter((t) => t.kind === 'audio' && t.flowing).map((t) => t.sid));
    const key = JSON.stringify({ plan, videoSids, audioSids });

    const live = this.#current && !(await isExited(this.#current.ffmpeg)) ? this.#current : undefined;
    if (this.#pending) {
      const p = this.#pending;
      const exited = await isExited(p.ffmpeg);
      if (!p.producing && (exited || Date.now() - p.startedAt > START_DEADLINE_MS)) {
        this.#log.warn({ stderr: p.ffmpeg.stderrTail().split('\n').slice(-2).join(' ') }, 'new compositor produced nothing; keeping the previous one');
        this.#pending = undefined;
        await this.#retire(p);
        if (++this.#failedStarts >= MAX_FAILED_STARTS && !live) throw new Error(`compositor failed to start: ${p.ffmpeg.stderrTail().split('\n').slice(-2).join(' ')}`);
        this.#retryAt = Date.now() + 1000;
        return;
      }
      if (p.key === key) return; // on its way
      // The plan moved again before the new one took over: replace it.
      this.#pending = undefined;
      await this.#retire(p);
    }
    if (live && live.key === key) return;
    if (Date.now() < this.#retryAt) return;
    this.#pending = await this.#start(key, plan, videoSids, audioSids, live !== undefined);
  }

  async #start(key: string, plan: LayoutPlan, videoSids: string[], audioSids: string[], handover: boolean): Promise<Compositor | undefined> {
    const h = this.#h;
    const n = this.#seq++;
    const opened = await h.taps.open(h.egressId, h.roomName, { ...h.source, trackSids: [...videoSids, ...audioSids] }).catch((err: unknown) => {
      this.#log.warn({ err: (err as Error).message }, 'could not open the room tap');
      return undefined;
    });
    if (!opened || opened.state !== 'ready') return undefined;
    const tracks = opened.tracks;
    const videos = videoSids.map((sid) => tracks.find((t) => t.trackSid === sid)).filter((t): t is TapTrack => t !== undefined);
    const audios = audioSids.map((sid) => tracks.find((t) => t.trackSid === sid)).filter((t): t is TapTrack => t !== undefined);
    const ordered = [...videos, ...audios];
    const streams: RtpInputStream[] = [];
    const targets: { trackSid: string; ip: string; port: number; rtcpPort: number }[] = [];
    for (const t of ordered) {
      const ports = await udpPortPair(h.rtpHost);
      streams.push({ ...t.codec, ...ports });
      targets.push({ trackSid: t.trackSid, ip: h.rtpHost, ...ports });
    }
    const dir = path.join(h.workDir, `compositor-${n}`);
    fs.mkdirSync(dir, { recursive: true });
    let sdpFile: string | undefined;
    if (streams.length > 0) {
      sdpFile = path.join(dir, 'input.sdp');
      fs.writeFileSync(sdpFile, writeRtpInputSdp(streams, h.rtpHost));
    }
    // Only a handover cuts: the first run's output starts as soon as it can (its first bytes are the
    // recording's start); a later run must not show what the old one already showed.
    const cutAtUs = handover ? (Date.now() + HANDOVER_MS) * 1000 : 0;
    const args = compositorArgs(
      sdpFile,
      { plan, videoSids: videos.map((v) => v.trackSid), audioCount: audios.length, encoding: h.encoding, audioOnly: h.source.audioOnly, videoOnly: h.source.videoOnly, t0Us: this.#t0Us, cutAtUs, workDir: dir },
      RTP_TIMEOUT_S,
    );
    const ffmpeg = launchFfmpeg(args, { stdout: 'pipe', log: this.#log });
    const c: Compositor = { key, ffmpeg, sessionId: opened.sessionId, startedAt: Date.now(), cutAtMs: cutAtUs / 1000, producing: false, forwarding: false, buffered: [] };
    this.#log.info({ run: n, tiles: plan.tiles.length, videos: videos.length, audios: audios.length, handover }, 'compositor started');
    ffmpeg.stdout!.on('data', (chunk: Buffer) => {
      if (c.forwarding) {
        h.write(chunk);
        return;
      }
      if (!c.producing) {
        c.producing = true;
        void this.#takeOver(c);
      }
      c.buffered.push(chunk);
    });
    await sleep(120, h.signal);
    try {
      await h.taps.connect(opened.sessionId, targets);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not connect the room tap');
    }
    // The first keyframe may come before FFmpeg listens; ask again until it produces.
    void (async () => {
      for (let i = 0; i < 6 && !c.producing && !h.signal.aborted; i++) {
        await sleep(400, h.signal);
        if (!c.producing) await h.taps.keyframe(opened.sessionId).catch(() => undefined);
      }
    })();
    return c;
  }

  /** The new compositor's first bytes: it feeds the outputs from now on; the old one ends. */
  async #takeOver(c: Compositor): Promise<void> {
    if (this.#pending !== c) return;
    const old = this.#current;
    if (old) old.forwarding = false;
    this.#pending = undefined;
    this.#current = c;
    this.#failedStarts = 0;
    c.forwarding = true;
    for (const b of c.buffered.splice(0)) this.#h.write(b);
    this.#h.onMedia(c.cutAtMs || Date.now());
    this.#log.info({ afterMs: Date.now() - c.startedAt }, 'compositor took over');
    await this.#retire(old);
  }

  async #retire(c: Compositor | undefined, graceMs = 1500): Promise<void> {
    if (!c) return;
    // Retiring the one that feeds the outputs (at the end): let it flush into them.
    if (!c.forwarding) c.ffmpeg.stdout?.removeAllListeners('data');
    await c.ffmpeg.stop(graceMs);
    if (c.sessionId) await this.#h.taps.close(c.sessionId).catch(() => undefined);
    c.sessionId = undefined;
  }
}

async function isExited(ff: FfmpegProcess): Promise<boolean> {
  return Promise.race([ff.exited.then(() => true), new Promise<boolean>((r) => setImmediate(() => r(false)))]);
}
