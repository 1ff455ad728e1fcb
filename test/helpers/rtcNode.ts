// @livekit/rtc-node (LiveKit's Rust SDK) participants for the tests: join a room, speak a tone.
import { AudioFrame, AudioSource, LocalAudioTrack, Room, TrackPublishOptions, TrackSource } from '@livekit/rtc-node';
import { joinToken } from './participants.ts';

const RATE = 48_000;

/** An rtc-node participant in `room`, auto-subscribing. */
export async function connectRtcNode(gatewayUrl: string, room: string, identity: string, grant: Record<string, boolean> = {}): Promise<Room> {
  const r = new Room();
  await r.connect(gatewayUrl.replace('http', 'ws'), await joinToken(room, identity, grant), { autoSubscribe: true, dynacast: false });
  return r;
}

/**
 * A sine (440 Hz, amplitude 8000 unless told) on a microphone track of `room`'s participant, fed in
 * 10 ms frames at the pace the source takes them; resolves with its stop.
 */
export async function speakTone(room: Room, { hz = 440, amplitude = 8000 } = {}): Promise<() => Promise<void>> {
  const source = new AudioSource(RATE, 1);
  await room.localParticipant!.publishTrack(LocalAudioTrack.createAudioTrack('tone', source), new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
  let stopped = false;
  let n = 0;
  const loop = (async () => {
    while (!stopped) {
      const data = new Int16Array(RATE / 100);
      for (let i = 0; i < data.length; i++, n++) data[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * n) / RATE));
      await source.captureFrame(new AudioFrame(data, RATE, 1, data.length));
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    await source.close();
  };
}
