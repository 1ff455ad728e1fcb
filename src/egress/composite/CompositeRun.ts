// The worker side of a room composite. It polls the gateway's room snapshot (4 times a second),
// asks the layout template for a plan, and when the plan changes (join, leave, mute, screen
// share, UpdateLayout) starts a NEW compositor FFmpeg for the new plan while the old one keeps
// feeding the outputs; the new one renders from a cut time onwards and takes over with its first
// bytes (make before break). The outputs (file, RTMP, HLS, images) read one continuous MPEG-TS and
// never see a restart: no reconnect at the destination, no broken file. A plan that only moves
// the same videos between the same tiles (an active-speaker change) is switched in place, inside
// the running compositor, by filter commands (src/egress/composite/stage.ts).
import fs from 'node:fs';
import path from 'node:path';
import { launchFfmpeg, type FfmpegProcess } from '../../media/ffmpeg.ts';
import { firstPts } from '../../media/mpegts.ts';
import type { Logger } from '../../logger.ts';
import type { EncodingSpec, TapTrack } from '../contract.ts';
import type { TapClient } from '../worker/TapClient.ts';
import { TapInput } from '../worker/tapInput.ts';
import { untilListening } from '../worker/tapSession.ts';
import { compositorArgs, slotSelector } from './filterGraph.ts';
import { selectionFor, stageFor, type Selection, type Stage } from './stage.ts';
import { loadLayout, resolveLayout } from './templates.ts';
import type { CompositeSource, LayoutPlan, LayoutTemplate, RoomSnapshot, Theme } from './types.ts';
import { sleep } from '../../time.ts';

/** How often the room is looked at: part of how late the picture follows a speaker change. */
const POLL_MS = 100;
/** A new compositor renders from this long after its start: time to bind, probe and get keyframes. */
const HANDOVER_MS = 800;
/** A new compositor that has produced nothing after this long is given up (the old one goes on). */
const START_DEADLINE_MS = 8000;
/**
 * The same when no compositor feeds the outputs (the egress's first run, or after one died): a
 * slow start is then only replaced by the same start from zero, so it gets longer. On a starved
 * CPU (a 1080p source decoded beside other encoders) the first run took more than 8 s, was
 * replaced every 9 s and the egress ended ABORTED without a frame.
 */
const FIRST_START_DEADLINE_MS = 30_000;
/** Seconds without any RTP after which a compositor ends by itself. */
const RTP_TIMEOUT_S = 10;
/**
 * How long the last compositor may take to finish once the room is gone. Its inputs died with the
 * room, and FFmpeg reads 'q' only between packets: it would sit in the RTP read until the timeout
 * above. The media ended with the room; what is lost is at most the muxer's interleave (0.5 s).
 */
const GONE_GRACE_MS = 500;
/** How long the last compositor may take to flush after StopEgress (its inputs still flow). */
const STOP_GRACE_MS = 5000;
const MAX_FAILED_STARTS = 4;
/**
 * The compositor's RTP input (tapInput.ts): each tile's video starts at a picture; audio waits a
 * moment for the first one, so FFmpeg's probe sees the pictures' sizes, then goes on regardless.
 */
const COMPOSITOR_GATE = { holdAudioMs: 2000, gateTimeoutMs: 3000 };
/**
 * FFmpeg reads one interactive command per 100 ms (the first within 100 ms): switching n slots on
 * one frame takes commands stamped n reads ahead, plus a margin for its main loop. A command read
 * after its stamp still applies, on the next frame.
 */
const COMMAND_READ_S = 0.1;
const COMMAND_MARGIN_S = 0.06;
/**
 * A compositor feeding the outputs that writes nothing for this long has stalled (FFmpeg alive
 * but its graph stuck): a new run replaces it, as one that exits would be.
 */
const STALL_MS = 3000;
/** Output searched for the first frame's timestamp before settling for the cut time. */
const HEAD_LIMIT = 512 * 1024;

export interface CompositeHooks {
  egressId: string;
  roomName: string;
  /** The room instance (sid) recorded: the composite ends when it is gone, even if the name is reused. */
  roomId: string;
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
  /** What it can show in place; what its slots should show, and what FFmpeg was told they show. */
  stage: Stage;
  selection: Selection;
  applied: Selection;
  ffmpeg: FfmpegProcess;
  /** The worker's end of the tap (tapInput.ts), feeding FFmpeg. */
  input: TapInput;
  sessionId: string | undefined;
  startedAt: number;
  /** Wall clock (ms) from which this run renders; 0: from its first frame. */
  cutAtMs: number;
  producing: boolean;
  forwarding: boolean;
  lastOutputAt: number;
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
  /** The recording's first frame went out (onMedia called); until then, the bytes seen so far. */
  #started = false;
  #head = Buffer.alloc(0);
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
          snap = await this.#h.taps.roomSnapshot(this.#h.egressId, this.#h.roomName, this.#h.roomId);
          gatewayFailures = 0;
        } catch (err) {
          if (++gatewayFailures > 60_000 / POLL_MS) throw new Error(`cannot reach the gateway: ${(err as Error).message}`);
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
          // A missed keepalive is retried in 2 s; the lease lasts 10 s.
          for (const c of [this.#current, this.#pending]) if (c?.sessionId) this.#h.taps.keepalive(c.sessionId).catch((err: unknown) => this.#log.debug({ err: (err as Error).message }, 'room tap keepalive failed'));
        }
        await sleep(POLL_MS, signal);
      }
    } finally {
      await this.#retire(this.#pending);
      await this.#retire(this.#current, this.endReason ? GONE_GRACE_MS : STOP_GRACE_MS);
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

    const live = this.#current && !(await isExited(this.#current.ffmpeg)) && !this.#stalled(this.#current) ? this.#current : undefined;
    if (this.#pending) {
      const p = this.#pending;
      const exited = await isExited(p.ffmpeg);
      const deadline = live ? START_DEADLINE_MS : FIRST_START_DEADLINE_MS;
      if (!p.producing && (exited || Date.now() - p.startedAt > deadline)) {
        this.#log.warn({ stderr: p.ffmpeg.stderrTail().split('\n').slice(-2).join(' '), waitedMs: deadline }, live ? 'new compositor produced nothing; keeping the previous one' : 'compositor produced nothing; starting another');
        this.#pending = undefined;
        await this.#retire(p);
        if (++this.#failedStarts >= MAX_FAILED_STARTS && !live) throw new Error(`compositor failed to start: ${p.ffmpeg.stderrTail().split('\n').slice(-2).join(' ')}`);
        this.#retryAt = Date.now() + 1000;
        return;
      }
      if (p.key === key) return; // on its way
      // The plan moved again before the new one took over: switch it in place, or replace it.
      if (this.#switch(p, plan, key, videoSids, audioSids)) {
        if (live && live.key !== key) this.#switch(live, plan, key, videoSids, audioSids);
        return;
      }
      this.#pending = undefined;
      await this.#retire(p);
    }
    if (live && live.key === key) return;
    if (live && this.#switch(live, plan, key, videoSids, audioSids)) return;
    if (Date.now() < this.#retryAt) return;
    // The new run is also ready for the plans this layout makes when someone else speaks.
    const variants = source.audioOnly
      ? []
      : snap.participants.map((p) =>
          layout.plan({ participants: snap.participants, speakers: [p.identity, ...speakers.filter((id) => id !== p.identity)], width: this.#h.encoding.width, height: this.#h.encoding.height, theme }),
        );
    this.#pending = await this.#start(key, plan, variants, videoSids, audioSids, live !== undefined);
  }

  #stalled(c: Compositor): boolean {
    if (!c.forwarding || Date.now() - c.lastOutputAt < STALL_MS) return false;
    if (this.#pending === undefined) this.#log.warn({ silentMs: Date.now() - c.lastOutputAt }, 'compositor stalled; starting a new one');
    return true;
  }

  /**
   * Shows `plan` on a compositor by switching its slots, when its stage allows it. One still
   * starting is kept too (replacing it on every speaker change could keep a loaded machine from
   * ever finishing a start): it gets the switch as soon as it produces.
   */
  #switch(c: Compositor, plan: LayoutPlan, key: string, videoSids: string[], audioSids: string[]): boolean {
    const selection = selectionFor(c.stage, plan, videoSids, audioSids);
    if (!selection) return false;
    c.selection = selection;
    c.key = key;
    // Until it produces, FFmpeg has no filter graph to take commands (it builds it on the first frames).
    if (c.producing) this.#apply(c);
    return true;
  }

  #apply(c: Compositor): void {
    const changed = c.selection.flatMap((k, s) => (k !== c.applied[s] ? [s] : []));
    if (changed.length === 0) return;
    // Stamped ahead so that every slot changes on the same frame, however the reads fall.
    const atS = Date.now() / 1000 + COMMAND_READ_S * changed.length + COMMAND_MARGIN_S;
    // A command that cannot be written means FFmpeg is going: the exit is noticed and a run replaces it.
    for (const s of changed) c.ffmpeg.command(slotSelector(s), 'map', String(c.selection[s]), atS);
    c.applied = [...c.selection];
    this.#log.info({ slots: changed.length, atMs: Math.round(atS * 1000) }, 'compositor switched in place');
  }

  async #start(key: string, plan: LayoutPlan, variants: LayoutPlan[], videoSids: string[], audioSids: string[], handover: boolean): Promise<Compositor | undefined> {
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
    let input: TapInput;
    try {
      input = await TapInput.open({ host: h.rtpHost, tracks: ordered, ...COMPOSITOR_GATE, log: this.#log });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not open the RTP input');
      await h.taps.close(opened.sessionId).catch(() => undefined);
      return undefined;
    }
    const dir = path.join(h.workDir, `compositor-${n}`);
    fs.mkdirSync(dir, { recursive: true });
    let sdpFile: string | undefined;
    if (ordered.length > 0) {
      sdpFile = path.join(dir, 'input.sdp');
      fs.writeFileSync(sdpFile, input.sdp);
    }
    // Only a handover cuts: the first run's output starts as soon as it can (the recording starts
    // at its first frame); a later run must not show what the old one already showed.
    const cutAtUs = handover ? (Date.now() + HANDOVER_MS) * 1000 : 0;
    // Built on the tracks the tap has: a plan tile whose track is gone meanwhile is a name card.
    const stage = stageFor(plan, variants, videos.map((v) => v.trackSid), audios.map((a) => a.trackSid));
    const selection: Selection = stage.slots.map(() => 0);
    const args = compositorArgs(
      sdpFile,
      { plan, stage, selection, videoSids: videos.map((v) => v.trackSid), audioCount: audios.length, encoding: h.encoding, audioOnly: h.source.audioOnly, videoOnly: h.source.videoOnly, t0Us: this.#t0Us, cutAtUs, workDir: dir },
      RTP_TIMEOUT_S,
    );
    const ffmpeg = launchFfmpeg(args, { stdout: 'pipe', log: this.#log });
    const c: Compositor = { key, stage, selection, applied: [...selection], ffmpeg, input, sessionId: opened.sessionId, startedAt: Date.now(), cutAtMs: cutAtUs / 1000, producing: false, forwarding: false, lastOutputAt: 0, buffered: [] };
    this.#log.info({ run: n, tiles: plan.tiles.length, videos: videos.length, audios: audios.length, choices: stage.slots.reduce((k, sl) => k + sl.candidates.length, 0), handover }, 'compositor started');
    ffmpeg.stdout!.on('data', (chunk: Buffer) => {
      c.lastOutputAt = Date.now();
      if (c.forwarding) {
        this.#forward(c, chunk);
        return;
      }
      // Buffered first: the take-over forwards what is buffered at once (this chunk included).
      c.buffered.push(chunk);
      if (!c.producing) {
        c.producing = true;
        this.#takeOver(c).catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'compositor take-over failed'));
      }
    });
    // The gateway sends once FFmpeg listens on the input's ports (or FFmpeg exited, or the run stops).
    await untilListening(input, ffmpeg, h.signal);
    try {
      // Kept pictures of a server-fed track (relayFeed.ts) arrive as a burst, all stamped with
      // their arrival (-use_wallclock_as_timestamps): the tile shows the newest of them at once.
      await h.taps.connect(opened.sessionId, input.targets, 'preroll');
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not connect the room tap');
    }
    this.#askKeyframes(c, opened.sessionId).catch((err: unknown) => this.#log.debug({ err: (err as Error).message }, 'keyframe requests stopped'));
    return c;
  }

  /** The first keyframe may come before FFmpeg decodes; ask again until the compositor produces. */
  async #askKeyframes(c: Compositor, sessionId: string): Promise<void> {
    const { signal, taps } = this.#h;
    for (let i = 0; i < 6 && !c.producing && !signal.aborted; i++) {
      await sleep(400, signal);
      if (!c.producing) await taps.keyframe(sessionId).catch((err: unknown) => this.#log.debug({ err: (err as Error).message }, 'keyframe request failed'));
    }
  }

  /**
   * Output bytes of the run that feeds the outputs. Until the recording's first frame has gone
   * out, they are also searched for it: the media starts at that frame, which is the cut or later
   * when the inputs came late (keyframes, a starved CPU). Its PTS counts from t0
   * (-output_ts_offset), so it gives the wall clock of the recording's start.
   */
  #forward(c: Compositor, chunk: Buffer): void {
    this.#h.write(chunk);
    if (this.#started) return;
    this.#head = Buffer.concat([this.#head, chunk]);
    const pts = firstPts(this.#head, this.#h.source.audioOnly ? 'audio' : 'video');
    if (pts === undefined && this.#head[0] === 0x47 && this.#head.length < HEAD_LIMIT) return;
    this.#started = true;
    this.#head = Buffer.alloc(0);
    this.#h.onMedia(pts !== undefined ? this.#t0Us / 1000 + pts * 1000 : c.cutAtMs || Date.now());
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
    // Each run's output starts packet-aligned; a previous run's may have ended mid-packet.
    this.#head = Buffer.alloc(0);
    for (const b of c.buffered.splice(0)) this.#forward(c, b);
    this.#apply(c); // speaker changes while it started
    this.#log.info({ afterMs: Date.now() - c.startedAt }, 'compositor took over');
    await this.#retire(old);
  }

  async #retire(c: Compositor | undefined, graceMs = 1500): Promise<void> {
    if (!c) return;
    // Retiring the one that feeds the outputs (at the end): let it flush into them.
    if (!c.forwarding) c.ffmpeg.stdout?.removeAllListeners('data');
    await c.ffmpeg.stop(graceMs);
    c.input.close();
    if (c.sessionId) await this.#h.taps.close(c.sessionId).catch(() => undefined);
    c.sessionId = undefined;
  }
}

async function isExited(ff: FfmpegProcess): Promise<boolean> {
  return Promise.race([ff.exited.then(() => true), new Promise<boolean>((r) => setImmediate(() => r(false)))]);
}
