// Simulcast layers of a transcoding ingress, per LiveKit's presets (ingress pkg/params/presets.go):
// each lower layer has half the width and height, and bitrate = main × (area ratio)^0.75.
import { IngressVideoEncodingPreset, type IngressVideoOptions } from '@livekit/protocol';

export interface VideoLayer {
  width: number;
  height: number;
  /** Bits per second. */
  bitrate: number;
  fps: number;
}

const P = IngressVideoEncodingPreset;
const PRESETS: Record<IngressVideoEncodingPreset, { width: number; height: number; fps: number; kbps: number; layers: number }> = {
  [P.H264_720P_30FPS_3_LAYERS]: { width: 1280, height: 720, fps: 30, kbps: 1900, layers: 3 },
  [P.H264_1080P_30FPS_3_LAYERS]: { width: 1920, height: 1080, fps: 30, kbps: 3500, layers: 3 },
  [P.H264_540P_25FPS_2_LAYERS]: { width: 960, height: 540, fps: 25, kbps: 1000, layers: 2 },
  [P.H264_720P_30FPS_1_LAYER]: { width: 1280, height: 720, fps: 30, kbps: 1900, layers: 1 },
  [P.H264_1080P_30FPS_1_LAYER]: { width: 1920, height: 1080, fps: 30, kbps: 3500, layers: 1 },
  [P.H264_720P_30FPS_3_LAYERS_HIGH_MOTION]: { width: 1280, height: 720, fps: 30, kbps: 2500, layers: 3 },
  [P.H264_1080P_30FPS_3_LAYERS_HIGH_MOTION]: { width: 1920, height: 1080, fps: 30, kbps: 4500, layers: 3 },
  [P.H264_540P_25FPS_2_LAYERS_HIGH_MOTION]: { width: 960, height: 540, fps: 25, kbps: 1300, layers: 2 },
  [P.H264_720P_30FPS_1_LAYER_HIGH_MOTION]: { width: 1280, height: 720, fps: 30, kbps: 2500, layers: 1 },
  [P.H264_1080P_30FPS_1_LAYER_HIGH_MOTION]: { width: 1920, height: 1080, fps: 30, kbps: 4500, layers: 1 },
};

const even = (n: number) => Math.max(2, Math.round(n / 2) * 2);

/** LiveKit's rule: 1.9 Mb/s at 1280x720, scaled by the picture area to the power 0.75. */
export function bitrateFor(width: number, height: number): number {
  return Math.round(1_900_000 * ((width * height) / (1280 * 720)) ** 0.75);
}

/** The re-encode fallback (B-frames, codecs the room cannot carry): one layer at the source's size. */
export function sameSizeLayer(width: number | undefined, height: number | undefined, fps: number | undefined): VideoLayer {
  const w = even(width || 1280);
  const h = even(height || 720);
  return { width: w, height: h, fps: Math.min(60, Math.max(1, Math.round(fps || 0) || 30)), bitrate: bitrateFor(w, h) };
}

function ladder(width: number, height: number, fps: number, bitrate: number, count: number): VideoLayer[] {
  const layers: VideoLayer[] = [];
  for (let i = 0; i < count; i++) {
    const scale = 2 ** i;
    layers.push({
      width: even(width / scale),
      height: even(height / scale),
      fps,
      bitrate: Math.round(bitrate * (1 / (scale * scale)) ** 0.75),
    });
  }
  return layers.reverse(); // lowest first, as simulcast encodings are listed
}

/**
 * The layers to encode, lowest first. Explicit `options.layers` win; otherwise the preset (LiveKit's
 * default H264_720P_30FPS_3_LAYERS when none is given). Preset layers taller than the source (when
 * its height is known) are left out rather than upscaled; the source's own size stands in if none is left.
 */
export function videoLayers(video: IngressVideoOptions | undefined, sourceHeight = 0): VideoLayer[] {
  const enc = video?.encodingOptions;
  if (enc?.case === 'options' && enc.value.layers.length > 0) {
    const fps = enc.value.frameRate || 30;
    return [...enc.value.layers]
      .filter((l) => l.width > 0 && l.height > 0)
      .sort((a, b) => a.width * a.height - b.width * b.height)
      .map((l) => ({ width: even(l.width), height: even(l.height), fps, bitrate: l.bitrate || 1_500_000 }));
  }
  const preset = PRESETS[enc?.case === 'preset' ? enc.value : P.H264_720P_30FPS_3_LAYERS] ?? PRESETS[P.H264_720P_30FPS_3_LAYERS];
  const layers = ladder(preset.width, preset.height, preset.fps, preset.kbps * 1000, preset.layers);
  if (sourceHeight <= 0) return layers;
  const fitting = layers.filter((l) => l.height <= sourceHeight);
  if (fitting.length > 0) return fitting;
  const width = even((layers[0]!.width * sourceHeight) / layers[0]!.height);
  return [{ width, height: even(sourceHeight), fps: preset.fps, bitrate: bitrateFor(width, sourceHeight) }];
}
