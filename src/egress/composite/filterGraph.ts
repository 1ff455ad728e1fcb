// A LayoutPlan → one FFmpeg command line: the RTP input (every tile's video, everyone's audio, from
// one SDP) composited over a colour canvas, audio mixed, H.264 + AAC in MPEG-TS on stdout.
//
// Timing: inputs are stamped with their arrival wall clock (-use_wallclock_as_timestamps, kept by
// -copyts), the canvas counts frames from the graph's wall-clock start (RTCSTART) and audio counts
// samples from its first arrival, so video and audio share one clock, the wall clock, and every
// compositor run of an egress continues the same timeline. `cutAt` drops what a new run renders
// before the moment the previous run hands over (see docs/composite.md).
import fs from 'node:fs';
import path from 'node:path';
import type { EncodingSpec } from '../contract.ts';
import type { Selection, Stage } from './stage.ts';
import type { LayoutPlan } from './types.ts';

const FONT_CANDIDATES = ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/TTF/DejaVuSans.ttf', '/System/Library/Fonts/Helvetica.ttc'];
const FONT = FONT_CANDIDATES.find((f) => fs.existsSync(f));

export interface CompositeGraphInput {
  /** The plan shown first: colours and name cards come from it. */
  plan: LayoutPlan;
  /** The slots and candidate tracks the run renders (src/egress/composite/stage.ts). */
  stage: Stage;
  /** What each slot shows at start (index into its candidates). */
  selection: Selection;
  /** Video track sids in the SDP's order (stream 0:v:i). */
  videoSids: string[];
  /** Number of audio streams in the SDP (0:a:0 …). */
  audioCount: number;
  encoding: EncodingSpec;
  audioOnly: boolean;
  videoOnly: boolean;
  /** Egress start, µs since the epoch: output timestamps count from it. */
  t0Us: number;
  /** Wall clock (µs) before which nothing is output; 0 = output at once. */
  cutAtUs: number;
  /** Folder for the name cards' text files (drawtext reads them: no escaping of user names). */
  workDir: string;
}

/** How far the canvas may fall behind the wall clock before it skips ahead (µs). */
const CATCH_UP_US = 500_000;

const even = (n: number) => Math.max(2, Math.floor(n / 2) * 2);

/** The selector of slot s (a streamselect): the target of the command that switches what it shows. */
export function slotSelector(s: number): string {
  return `streamselect@slot${s}`;
}

/** `[from]chain` into each label: directly for one, through a split for several. */
function fanOut(from: string, labels: string[], chain = 'null'): string {
  return labels.length === 1 ? `[${from}]${chain}[${labels[0]}]` : `[${from}]${chain},split=${labels.length}${labels.map((l) => `[${l}]`).join('')}`;
}

/** The -filter_complex text and the labels it ends in. */
export function compositeFilter(g: CompositeGraphInput): { filter: string; video?: string; audio?: string } {
  const e = g.encoding;
  const parts: string[] = [];
  let video: string | undefined;
  let audio: string | undefined;
  const hasRtp = g.videoSids.length + g.audioCount > 0;
  const cut = g.cutAtUs > 0 ? (g.cutAtUs / 1e6).toFixed(3) : '';

  if (!g.audioOnly) {
    const W = even(e.width);
    const H = even(e.height);
    // The canvas, stamped with wall-clock time from the moment the graph starts: one frame slot
    // after the other while the compositor keeps up; when it falls more than CATCH_UP_US behind
    // the wall clock (starved of CPU), the next frame jumps to the wall clock, so the overlays skip
    // the tile frames in between and the recording keeps wall time (a gap in the picture, not a
    // shorter recording drifting away from its audio, which is stamped by its sample count).
    const slot = (1e6 / e.framerate).toFixed(3);
    const stamp = `if(isnan(PREV_OUTPTS)\\,RTCSTART\\,max(max(RTCSTART+N*${slot}\\,PREV_OUTPTS+${slot})\\,RTCTIME-${CATCH_UP_US}))`;
    let chain = `color=c=${g.plan.background}:s=${W}x${H}:r=${e.framerate},format=yuv420p,settb=AVTB,setpts='${stamp}'`;
    let card = 0;
    for (const t of g.plan.tiles) {
      if (t.trackSid && g.videoSids.includes(t.trackSid)) continue;
      chain += `,drawbox=x=${t.x}:y=${t.y}:w=${t.w}:h=${t.h}:color=${g.plan.cardColor}:t=fill`;
      if (FONT) {
        const textFile = path.join(g.workDir, `card-${card++}.txt`);
        fs.writeFileSync(textFile, (t.label || t.identity).slice(0, 64));
        const size = Math.max(12, Math.round(Math.min(t.h / 8, t.w / 12)));
        chain += `,drawtext=fontfile=${FONT}:textfile=${textFile}:fontcolor=${g.plan.textColor}:fontsize=${size}:x=${t.x}+(${t.w}-text_w)/2:y=${t.y}+(${t.h}-text_h)/2`;
      }
    }
    if (!hasRtp) chain += ',realtime';
    parts.push(`${chain}[canvas0]`);
    // Each slot of the stage shows one of its candidate tracks; a slot with several picks one with
    // a streamselect that a command switches (src/egress/composite/stage.ts), before the slot's one
    // scaler (which takes each frame's size as it comes, so candidates may differ in size).
    const uses = new Map<number, string[]>();
    const slotInputs = g.stage.slots.map((slot, s) =>
      slot.candidates.map((sid) => {
        const i = g.videoSids.indexOf(sid);
        const label = `v${i}s${s}`;
        uses.set(i, [...(uses.get(i) ?? []), label]);
        return label;
      }),
    );
    for (const [i, labels] of uses) parts.push(fanOut(`0:v:${i}`, labels));
    let last = 'canvas0';
    g.stage.slots.forEach((slot, s) => {
      const inputs = slotInputs[s]!;
      const w = even(slot.w);
      const h = even(slot.h);
      const fit =
        slot.fit === 'cover'
          ? `scale=${w}:${h}:force_original_aspect_ratio=increase,crop=${w}:${h}`
          : `scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2:color=${g.plan.background}`;
      // streamselect emits a frame whenever any of its inputs has one (the chosen one's, restamped):
      // back to the canvas rate before the scaler, which would otherwise scale each frame n times.
      const source =
        inputs.length === 1
          ? `[${inputs[0]}]`
          : `${inputs.map((l) => `[${l}]`).join('')}${slotSelector(s)}=inputs=${inputs.length}:map=${g.selection[s] ?? 0},fps=${e.framerate},`;
      const tile = `tile${s}`;
      parts.push(`${source}${fit},setsar=1,format=yuv420p[${tile}]`);
      // repeatlast: a tile whose frames pause keeps its last picture; the canvas sets the pace.
      parts.push(`[${last}][${tile}]overlay=x=${slot.x}:y=${slot.y}:eof_action=repeat:repeatlast=1:shortest=0[canvas${s + 1}]`);
      last = `canvas${s + 1}`;
    });
    parts.push(`[${last}]${cut ? `select='gte(t\\,${cut})',` : ''}null[vout]`);
    video = 'vout';
  }

  if (!g.videoOnly) {
    const sr = 48000;
    if (g.audioCount === 0) {
      parts.push(`anullsrc=r=${sr}:cl=stereo,asetpts=RTCSTART*${sr}/1000000+N${hasRtp ? '' : ',arealtime'}[amixed]`);
    } else {
      const labels: string[] = [];
      for (let i = 0; i < g.audioCount; i++) {
        parts.push(`[0:a:${i}]aresample=${sr},aformat=sample_fmts=fltp:channel_layouts=stereo[ain${i}]`);
        labels.push(`[ain${i}]`);
      }
      const mixed = g.audioCount === 1 ? '[ain0]anull' : `${labels.join('')}amix=inputs=${g.audioCount}:duration=longest:dropout_transition=0:normalize=0`;
      // Samples counted from the first one's arrival: one clock with the video, no jitter.
      parts.push(`${mixed},asetpts=STARTPTS+N/SR/TB[amixed]`);
    }
    parts.push(`[amixed]${cut ? `aselect='gte(t\\,${cut})',` : ''}anull[aout]`);
    audio = 'aout';
  }
  return { filter: parts.join(';'), ...(video ? { video } : {}), ...(audio ? { audio } : {}) };
}

/** The compositor: SDP in, MPEG-TS (H.264 + AAC) out on stdout. */
export function compositorArgs(sdpFile: string | undefined, g: CompositeGraphInput, timeoutS: number): string[] {
  const e = g.encoding;
  const args: string[] = [];
  if (sdpFile) {
    args.push(
      '-protocol_whitelist', 'file,udp,rtp',
      '-use_wallclock_as_timestamps', '1',
      '-listen_timeout', String(timeoutS),
      // The RTP input passes each video on from a keyframe (tapInput.ts): the probe ends once every
      // stream has shown its parameters; the bound is for a tile whose keyframe is late.
      '-analyzeduration', '1000000', '-probesize', '5000000', '-fpsprobesize', '0', '-buffer_size', String(4 * 1024 * 1024),
      // Probed packets are kept (no nobuffer): they hold each tile's first keyframe.
      '-reorder_queue_size', '64',
      // A camera changing resolution must not rebuild the graph: that would reset the slots'
      // selectors to their start (the scalers take the new size as it comes).
      '-reinit_filter', '0',
      '-i', sdpFile,
    );
  }
  const { filter, video, audio } = compositeFilter(g);
  // copyts: the filter graph's wall-clock stamps reach the muxer; the offset makes them start near 0.
  args.push('-filter_complex', filter, '-copyts');
  if (video) {
    const gop = Math.max(1, Math.round(e.framerate * e.keyFrameInterval));
    args.push(
      '-map', `[${video}]`,
      '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', e.profile, '-pix_fmt', 'yuv420p',
      '-b:v', `${e.videoBitrate}k`, '-maxrate', `${e.videoBitrate}k`, '-bufsize', `${e.videoBitrate * 2}k`,
      '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0', '-vsync', 'passthrough',
      // Keyframes by media time, not only by frame count: a starved canvas skips frames to keep
      // wall time (CATCH_UP_US), and then `gop` frames spanned more than the interval, so HLS
      // segments came out 2.33 s long for 2 s asked with a CPU hog beside the gateway. Measured
      // from the last keyframe (frame times are wall-clock seconds here, too large to divide).
      '-force_key_frames', `expr:if(isnan(prev_forced_t),1,gte(t-prev_forced_t,${(e.keyFrameInterval - 0.5 / e.framerate).toFixed(4)}))`,
    );
  }
  if (audio) args.push('-map', `[${audio}]`, '-c:a', 'aac', '-b:a', `${e.audioBitrate}k`, '-ar', String(e.audioFrequency), '-ac', '2');
  args.push('-output_ts_offset', (-g.t0Us / 1e6).toFixed(6), '-max_interleave_delta', '500000', '-f', 'mpegts', '-muxdelay', '0', '-muxpreload', '0', 'pipe:1');
  return args;
}
