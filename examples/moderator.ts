// Moderator agent: mutes anyone whose microphone stays above a loudness threshold for 3 s, through
// the RoomService API, and posts a data message (topic "moderation") saying why.
//
//   LIVEKIT_URL=http://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret \
//     node --import tsx examples/moderator.ts
//
// MODERATOR_THRESHOLD_DBFS (default -20) and MODERATOR_HOLD_MS (default 3000) tune it;
// MODERATOR_AUTOMATIC=false makes it join only rooms it is dispatched to explicitly.
import { defineAgent, rmsDbfs, runIfMain, FRAME_MS, type AgentRoom, type JobContext, type RemoteTrackInfo } from 'roomgate/agents';

const THRESHOLD_DBFS = Number(process.env.MODERATOR_THRESHOLD_DBFS ?? -20);
const HOLD_MS = Number(process.env.MODERATOR_HOLD_MS ?? 3000);

/** Listens to one track until it has been too loud for HOLD_MS of audio, then mutes it. */
async function watch(ctx: JobContext, room: AgentRoom, track: RemoteTrackInfo): Promise<void> {
  if (track.kind !== 'audio' || room.participants.get(track.participantIdentity)?.kind === 'agent') return;
  let loudMs = 0;
  // Audio time, not wall-clock time: frames can arrive in bursts.
  for await (const frame of room.audioFrames(track)) {
    loudMs = rmsDbfs(frame.samples) >= THRESHOLD_DBFS ? loudMs + FRAME_MS : 0;
    if (loudMs < HOLD_MS) continue;
    const level = rmsDbfs(frame.samples).toFixed(1);
    await room.muteTrack(track.participantIdentity, track.trackSid);
    const reason = `${track.participantIdentity} was muted: audio above ${THRESHOLD_DBFS} dBFS (${level} dBFS) for ${HOLD_MS / 1000} s`;
    await room.publishData(JSON.stringify({ type: 'muted', identity: track.participantIdentity, trackSid: track.trackSid, reason }), { topic: 'moderation' });
    ctx.log.info({ identity: track.participantIdentity, track: track.trackSid, level }, 'muted a loud participant');
    return;
  }
}

const moderator = defineAgent({
  name: 'moderator',
  automatic: process.env.MODERATOR_AUTOMATIC !== 'false',
  async entry(ctx) {
    const room = await ctx.connect();
    // One watcher per track: a track its owner mutes and unmutes still has its first watcher (it
    // only returns after muting someone), so a second one would double the decoding and the mutes.
    const watching = new Set<string>();
    const start = (t: RemoteTrackInfo) => {
      if (watching.has(t.trackSid)) return;
      watching.add(t.trackSid);
      void watch(ctx, room, t)
        .catch((err: unknown) => ctx.log.warn({ err }, 'moderation of a track failed'))
        .finally(() => watching.delete(t.trackSid));
    };
    room.on('trackSubscribed', start);
    // A track unmuted later (by its owner or an admin) is watched again.
    room.on('trackMuted', (_identity, trackSid, muted) => {
      const track = room.remoteTracks.find((t) => t.trackSid === trackSid);
      if (!muted && track) start(track);
    });
    room.remoteTracks.forEach(start);
  },
});

export default moderator;
runIfMain(import.meta.url, moderator);
