// "Say what you hear": when a speaker pauses, the agent plays back their last 2 s on its own audio
// track. Proves both directions: PCM decoded from the room, PCM published into it.
//
//   LIVEKIT_URL=http://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret \
//     node --import tsx examples/echo.ts
//
// This is where a real assistant plugs in: hand `speech` to speech-to-text, the text to an LLM,
// its answer to text-to-speech, and push the resulting 48 kHz mono PCM into `out` (see README).
import { AudioSource, defineAgent, rmsDbfs, runIfMain, FRAME_SAMPLES, SAMPLE_RATE, type AgentRoom, type RemoteTrackInfo } from 'roomgate/agents';

const KEEP_SAMPLES = 2 * SAMPLE_RATE;
const VOICE_DBFS = Number(process.env.ECHO_VOICE_DBFS ?? -45);
/** Quiet this long (wall clock, also when RTP stops altogether) counts as the end of a phrase. */
const PAUSE_MS = Number(process.env.ECHO_PAUSE_MS ?? 500);

async function listen(room: AgentRoom, track: RemoteTrackInfo, out: AudioSource, signal: AbortSignal): Promise<void> {
  if (track.kind !== 'audio' || room.participants.get(track.participantIdentity)?.kind === 'agent') return;
  let speech: Int16Array[] = [];
  let kept = 0;
  let lastVoice = 0;
  const flush = setInterval(() => {
    if (kept === 0 || Date.now() - lastVoice < PAUSE_MS) return;
    for (const chunk of speech) out.push(chunk); // the pause itself is the "short delay"
    speech = [];
    kept = 0;
  }, 100);
  signal.addEventListener('abort', () => clearInterval(flush), { once: true });
  try {
    for await (const frame of room.audioFrames(track)) {
      if (rmsDbfs(frame.samples) < VOICE_DBFS) continue;
      lastVoice = Date.now();
      speech.push(frame.samples);
      kept += FRAME_SAMPLES;
      while (kept > KEEP_SAMPLES) kept -= speech.shift()!.length;
    }
  } finally {
    clearInterval(flush);
  }
}

const echo = defineAgent({
  name: 'echo',
  automatic: process.env.ECHO_AUTOMATIC !== 'false',
  async entry(ctx) {
    const room = await ctx.connect();
    const out = new AudioSource();
    await room.publishAudio(out, { name: 'echo' });
    await room.setAttributes({ 'agent.state': 'listening' });
    const start = (t: RemoteTrackInfo) => void listen(room, t, out, ctx.signal).catch((err: unknown) => ctx.log.warn({ err }, 'listening failed'));
    room.on('trackSubscribed', start);
    room.remoteTracks.forEach(start);
    ctx.signal.addEventListener('abort', () => out.close(), { once: true });
  },
});

export default echo;
runIfMain(import.meta.url, echo);
