#!/usr/bin/env bash
# Streams real OBS Studio (Debian's obs-studio 29, headless under xvfb-run, its default Simple-mode
# output: x264 veryfast CBR 2500 kb/s, B-frames, a keyframe every 250 frames, AAC 48 kHz) into a
# running gateway over RTMP, records it with a participant egress, stops OBS with SIGINT and
# ffprobes the recording. Not part of CI (OBS under Xvfb takes most of a core).
#
#   npm start                       # in another terminal (or set ROOMGATE_URL/_API_KEY/_API_SECRET)
#   scripts/obs-check.sh [seconds]  # default 20 s of recording
#
# Needs: apt-get install -y obs-studio xvfb ffmpeg. OBS_KEYINT_SEC=2 OBS_BFRAMES=0 switch the
# profile to OBS's Advanced output with that keyframe interval and no B-frames.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
export ROOMGATE_URL="${ROOMGATE_URL:-http://127.0.0.1:7880}"
api() { node --import tsx scripts/obs-check.ts "$@"; }

for bin in obs xvfb-run ffprobe; do
  command -v "$bin" >/dev/null || { echo "obs-check: $bin is missing (apt-get install -y obs-studio xvfb ffmpeg)" >&2; exit 1; }
done
curl -fsS "$ROOMGATE_URL/healthz" >/dev/null || { echo "obs-check: no gateway at $ROOMGATE_URL (run npm start)" >&2; exit 1; }

room="obs-check-$(date +%s)"
read -r rtmp_url stream_key ingress_id < <(api create-ingress "$room" obs)
echo "obs-check: ingress $ingress_id, OBS streams to $rtmp_url"

# OBS reads its profile and scene collection from $HOME/.config/obs-studio: a throwaway one.
home="$(mktemp -d)"
cfg="$home/.config/obs-studio"
mkdir -p "$cfg/basic/profiles/roomgate" "$cfg/basic/scenes"
obs_pid=""
cleanup() {
  if [ -n "$obs_pid" ] && kill -0 "$obs_pid" 2>/dev/null; then kill -INT "$obs_pid" 2>/dev/null || true; sleep 3; kill -KILL "$obs_pid" 2>/dev/null || true; fi
  api delete-ingress "$ingress_id" >/dev/null 2>&1 || true
  rm -rf "$home"
}
trap cleanup EXIT

cat > "$cfg/global.ini" <<'INI'
[General]
Pre19Defaults=false
Pre21Defaults=false
Pre23Defaults=false
Pre24.1Defaults=false
FirstRun=true
LastVersion=486539266
ConfirmOnExit=false
WarnBeforeStartingStream=false
WarnBeforeStoppingStream=false
EnableAutoUpdates=false

[BasicWindow]
SysTrayEnabled=false
PreviewEnabled=true

[Basic]
Profile=roomgate
ProfileDir=roomgate
SceneCollection=roomgate
SceneCollectionFile=roomgate

[OBSWebSocket]
FirstLoad=false
ServerEnabled=false
INI

mode=Simple
if [ -n "${OBS_KEYINT_SEC:-}" ] || [ -n "${OBS_BFRAMES:-}" ]; then
  mode=Advanced
  echo "{\"keyint_sec\":${OBS_KEYINT_SEC:-0},\"rate_control\":\"CBR\",\"bitrate\":2500,\"preset\":\"veryfast\",\"x264opts\":\"bframes=${OBS_BFRAMES:-3}\"}" \
    > "$cfg/basic/profiles/roomgate/streamEncoder.json"
fi
cat > "$cfg/basic/profiles/roomgate/basic.ini" <<INI
[General]
Name=roomgate

[Video]
BaseCX=1280
BaseCY=720
OutputCX=1280
OutputCY=720
FPSType=0
FPSCommon=30
ScaleType=bicubic
ColorFormat=NV12
ColorSpace=709
ColorRange=Partial

[Audio]
SampleRate=48000
ChannelSetup=Stereo

[Output]
Mode=$mode

[SimpleOutput]
VBitrate=2500
ABitrate=128
StreamEncoder=x264
Preset=veryfast
RecFormat=flv

[AdvOut]
Encoder=obs_x264
TrackIndex=1
INI
printf '{"type":"rtmp_custom","settings":{"server":"%s","key":"%s","use_auth":false,"bwtest":false}}\n' "$rtmp_url" "$stream_key" \
  > "$cfg/basic/profiles/roomgate/service.json"
# One scene: a moving test pattern (FFmpeg's testsrc2 through OBS's media source) with a tone.
cat > "$cfg/basic/scenes/roomgate.json" <<'JSON'
{"current_program_scene":"Scene","current_scene":"Scene","current_transition":"Fade","groups":[],"modules":{},"name":"roomgate","preview_locked":false,"quick_transitions":[],"saved_projectors":[],"scaling_enabled":false,"scene_order":[{"name":"Scene"}],"sources":[
{"enabled":true,"id":"ffmpeg_source","mixers":255,"muted":false,"name":"Pattern","settings":{"close_when_inactive":false,"hw_decode":false,"input":"testsrc2=size=1280x720:rate=30","input_format":"lavfi","is_local_file":false,"looping":true,"restart_on_activate":true},"versioned_id":"ffmpeg_source","volume":1.0},
{"enabled":true,"id":"ffmpeg_source","mixers":255,"muted":false,"name":"Tone","settings":{"close_when_inactive":false,"hw_decode":false,"input":"sine=frequency=440:sample_rate=48000","input_format":"lavfi","is_local_file":false,"looping":true,"restart_on_activate":true},"versioned_id":"ffmpeg_source","volume":1.0},
{"enabled":true,"id":"scene","mixers":0,"name":"Scene","settings":{"custom_size":false,"id_counter":2,"items":[{"align":5,"bounds":{"x":0.0,"y":0.0},"bounds_align":0,"bounds_type":0,"crop_bottom":0,"crop_left":0,"crop_right":0,"crop_top":0,"id":1,"locked":false,"name":"Pattern","pos":{"x":0.0,"y":0.0},"rot":0.0,"scale":{"x":1.0,"y":1.0},"visible":true},{"align":5,"bounds":{"x":0.0,"y":0.0},"bounds_align":0,"bounds_type":0,"crop_bottom":0,"crop_left":0,"crop_right":0,"crop_top":0,"id":2,"locked":false,"name":"Tone","pos":{"x":0.0,"y":0.0},"rot":0.0,"scale":{"x":1.0,"y":1.0},"visible":true}]},"versioned_id":"scene","volume":1.0}
],"transition_duration":300,"transitions":[]}
JSON

echo "obs-check: starting OBS ($mode output) under xvfb-run"
HOME="$home" XDG_RUNTIME_DIR="$home" LIBGL_ALWAYS_SOFTWARE=1 \
  xvfb-run -a obs --profile roomgate --collection roomgate --startstreaming --multi --disable-missing-files-check \
  >"$home/obs.log" 2>&1 &
xvfb_pid=$!

echo "obs-check: waiting for the ingress to publish"
state="$(api wait-publishing "$ingress_id" 90)" || { echo "obs-check: OBS never published; its log:" >&2; tail -30 "$home/obs.log" >&2; exit 1; }
echo "obs-check: publishing $state"
# The OBS process itself (xvfb-run's child): SIGINT makes it stop the stream and quit cleanly.
obs_pid="$(pgrep -P "$xvfb_pid" -x obs || true)"

start_at=$(date +%s.%N)
egress_id="$(api start-egress "$room" obs "obs-check/$room")"
echo "obs-check: recording $seconds s (egress $egress_id)"
sleep "$seconds"
stop_at=$(date +%s.%N)
read -r status location rest < <(api stop-egress "$egress_id")
stopped=$(awk -v s="$stop_at" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
echo "obs-check: egress $status ${stopped}s after StopEgress: $location ${rest:-}"

if [ -n "$obs_pid" ]; then
  kill -INT "$obs_pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$obs_pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$obs_pid" 2>/dev/null && echo "obs-check: OBS did not quit on SIGINT within 10 s" >&2
fi
obs_pid=""

[ "$status" = "EGRESS_COMPLETE" ] && [ -f "$location" ] || { echo "obs-check: FAILED: no recording" >&2; exit 1; }
ffprobe -v error -show_entries stream=codec_name,width,height,has_b_frames:format=duration -of compact "$location"
duration="$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$location")"
# The recording may run until the stop completes: compare with the whole StartEgress → stopped span.
span=$(awk -v s="$start_at" -v e="$stop_at" -v x="$stopped" 'BEGIN { printf "%.1f", e - s + x }')
echo "obs-check: recorded ${duration}s; StartEgress → egress ended took ${span}s"
