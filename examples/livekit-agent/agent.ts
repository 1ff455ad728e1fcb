// A stock @livekit/agents 1.9 agent that runs offline against roomgate: it listens to the room's
// audio, finds utterances by their energy, and answers each with a short chirp on its own track,
// keeping `lk.agent.state` at listening / thinking / speaking as LiveKit's voice pipeline does.
//
//   LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret \
//     node --import tsx examples/livekit-agent/agent.ts start
//
// The framework's CLI (`start`) registers a worker at the gateway's /agent; each job runs in a
// process the framework forks, which imports this same file (hence `--import tsx`, which it passes
// on). See README.md beside this file for where STT/LLM/TTS plugins go.
import { fileURLToPath } from 'node:url';
import { cli, defineAgent, ServerOptions, type JobContext } from '@livekit/agents';
import {
  AudioFrame,
  AudioSource,
  AudioStream,
  LocalAudioTrack,
  ParticipantKind,
  RoomEvent,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  type LocalParticipant,
  type RemoteParticipant,
  type RemoteTrack,
} from '@livekit/rtc-node';

const RATE = 48_000;
/** 10 ms frames, as AudioStream delivers them. */
const FRAME = RATE / 100;
/** Louder than this (dBFS, frame RMS) is voice; a quiet room's noise floor sits well below. */
const VOICE_DBFS = Number(process.env.AGENT_VOICE_DBFS ?? -40);
/** Voice this long starts an utterance (so a click is not one). */
const ONSET_MS = 60;
/** Quiet this long ends an utterance: the end of the user's turn. */
const PAUSE_MS = Number(process.env.AGENT_PAUSE_MS ?? 500);

type AgentState = 'listening' | 'thinking' | 'speaking';

function rmsDbfs(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return 10 * Math.log10(sum / Math.max(1, samples.length) / (32768 * 32768) + 1e-12);
}

/** A 300 ms rising chirp (600 → 1200 Hz) with 10 ms fades, in 10 ms frames. */
function chirp(): Int16Array[] {
  const n = (RATE * 300) / 1000;
  const out = new Int16Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    phase += (2 * Math.PI * (600 + (600 * i) / n)) / RATE;
    const fade = Math.min(1, i / FRAME, (n - i) / FRAME);
    out[i] = Math.round(12000 * fade * Math.sin(phase));
  }
  const frames: Int16Array[] = [];
  // slice, not subarray: rtc-node 0.13 hands the FFI the whole ArrayBuffer, ignoring a view's offset.
  for (let i = 0; i < n; i += FRAME) frames.push(out.slice(i, i + FRAME));
  return frames;
}

/**
 * Energy turn detection on one participant's microphone: calls `onTurn` after each utterance. Stock
 * alternative: `@livekit/agents-plugin-silero`'s VAD (its ONNX model ships in that package).
 */
async function listen(track: RemoteTrack, onTurn: () => Promise<void>): Promise<void> {
  const reader = new AudioStream(track, RATE, 1).getReader();
  let voicedMs = 0;
  let speaking = false;
  let lastVoice = 0;
  // The pause is timed by the clock, not by counting quiet frames: a sender's Opus DTX stops sending
  // in silence, and then no frames come at all until the next sound.
  const pauses = setInterval(() => {
    if (!speaking || Date.now() - lastVoice < PAUSE_MS) return;
    speaking = false;
    onTurn().catch((err: unknown) => console.error('answer failed', err));
  }, 20);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      if (rmsDbfs(value.data) > VOICE_DBFS) {
        voicedMs += (value.samplesPerChannel / value.sampleRate) * 1000;
        lastVoice = Date.now();
        if (voicedMs >= ONSET_MS) speaking = true;
      } else {
        voicedMs = 0;
      }
    }
  } finally {
    clearInterval(pauses);
  }
}

/** Resolves once a microphone is subscribed: publishing while that subscription is negotiated lost the agent's audio on roomgate. */
function firstAudio(room: JobContext['room']): Promise<void> {
  for (const p of room.remoteParticipants.values()) {
    for (const pub of p.trackPublications.values()) if (pub.kind === TrackKind.KIND_AUDIO && pub.track) return Promise.resolve();
  }
  return new Promise((resolve) => {
    const on = (track: RemoteTrack): void => {
      if (track.kind !== TrackKind.KIND_AUDIO) return;
      room.off(RoomEvent.TrackSubscribed, on);
      resolve();
    };
    room.on(RoomEvent.TrackSubscribed, on);
  });
}

export default defineAgent({
  entry: async (ctx: JobContext) => {
    await ctx.connect();
    const me: LocalParticipant = ctx.room.localParticipant!;
    const setState = (state: AgentState) => me.setAttributes({ 'lk.agent.state': state });

    // One answer track for the whole job, published up front so the first answer does not wait for
    // a negotiation, and fed all along: silence between answers (a source left without frames for a
    // while was not heard again when the answer came, with rtc-node 0.13.35). A short queue keeps
    // that silence from delaying the answer.
    const source = new AudioSource(RATE, 1, 100);
    await firstAudio(ctx.room);
    await me.publishTrack(LocalAudioTrack.createAudioTrack('agent-voice', source), new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
    const pending: Int16Array[] = [];
    let played: (() => void) | undefined;
    let stopped = false;
    const player = (async () => {
      const silence = new Int16Array(FRAME);
      while (!stopped) {
        const data = pending.shift() ?? silence;
        if (pending.length === 0 && played) {
          played();
          played = undefined;
        }
        await source.captureFrame(new AudioFrame(data, RATE, 1, FRAME));
      }
    })().catch((err: unknown) => console.error('playing failed', err));
    ctx.room.on(RoomEvent.Disconnected, () => (stopped = true));
    ctx.addShutdownCallback(async () => {
      stopped = true;
      await player;
      await source.close();
    });

    let busy = false;
    const answer = async (): Promise<void> => {
      if (busy) return; // one answer at a time; a turn that ends while speaking is dropped
      busy = true;
      try {
        // State updates go out in order over the signal connection; the answer does not wait for
        // the server to confirm them (a round trip each).
        const thinking = setState('thinking');
        // Plug in here: the utterance's audio to an STT, its text to an LLM, the reply to a TTS,
        // and the TTS's frames to `pending` (or hand all of it to the framework's `voice.AgentSession`).
        const speaking = setState('speaking');
        await new Promise<void>((resolve) => {
          played = resolve;
          pending.push(...chirp());
        });
        await Promise.all([thinking, speaking]);
        await new Promise((r) => setTimeout(r, source.queuedDuration));
        // Listening again from here; the server's confirmation of the state may come later.
        busy = false;
        await setState('listening');
      } finally {
        busy = false;
      }
    };

    const listening = new Set<string>();
    const onTrack = (track: RemoteTrack, participant: RemoteParticipant): void => {
      // Other agents' voices (its own is not remote) are not users' turns.
      if (track.kind !== TrackKind.KIND_AUDIO || participant.kind === ParticipantKind.AGENT || !track.sid || listening.has(track.sid)) return;
      listening.add(track.sid);
      listen(track, answer)
        .catch((err: unknown) => console.error('listening failed', err))
        .finally(() => listening.delete(track.sid!));
    };
    ctx.room.on(RoomEvent.TrackSubscribed, (track, _pub, participant) => onTrack(track, participant));
    for (const p of ctx.room.remoteParticipants.values()) {
      for (const pub of p.trackPublications.values()) if (pub.track) onTrack(pub.track, p);
    }
    await setState('listening');
  },
});

// The framework's job processes import this file too; only the top-level process runs the CLI.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  cli.runApp(
    new ServerOptions({
      agent: fileURLToPath(import.meta.url),
      // Explicit dispatch by this name (AgentDispatchClient, a token's roomConfig.agents); an empty
      // AGENT_NAME= makes it an automatic agent that joins every new room.
      agentName: process.env.AGENT_NAME ?? 'chirp',
      // The production default keeps up to 4 job processes warm; one is enough for a demo.
      numIdleProcesses: Number(process.env.AGENT_IDLE_PROCESSES ?? 1),
      // `start` serves the worker's health check on 0.0.0.0:8081 by default; loopback unless asked,
      // and another port where two workers share a machine.
      host: process.env.AGENT_HTTP_HOST ?? '127.0.0.1',
      port: Number(process.env.AGENT_HTTP_PORT ?? 8081),
    }),
  );
}
