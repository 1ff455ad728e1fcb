// Agent figures: room start → agent participant joined, and speech onset → the agent hearing it.
//
// Room start: CreateRoom (RoomService) until the gateway sees the agent's participant join; covers
// roomstarted → dispatch → offer → accept → the worker's NodeParticipant join (WebSocket + device
// load). ICE/DTLS of its transports come after the join and are not included.
// Speech: a speaker publishes PCM through the agent SDK's publisher (real-time paced, FFmpeg Opus
// encode, werift SRTP); the agent's decoder (FFmpeg Opus decode to PCM over loopback TCP) flags the
// first frame above -30 dBFS. Onset is when the tone is queued at the speaker; both ends share this
// process's clock. Includes pacing (≤10 ms), encode, SFU, decode and 20 ms framing; no capture or
// jitter buffer.
import { performance } from 'node:perf_hooks';
import { ParticipantInfo_Kind } from '@livekit/protocol';
import { RoomServiceClient } from 'livekit-server-sdk';
import { AudioSource, PcmPublisher, SAMPLE_RATE, rmsDbfs } from '../src/agents/audio.ts';
import { defineAgent, runWorker, type RemoteTrackInfo } from '../src/agents/index.ts';
import { mintToken } from '../src/auth/tokens.ts';
import { NodeParticipant } from '../src/client/node.ts';
import { waitFor } from '../test/helpers/net.ts';
import { BENCH_KEY, BENCH_SECRET, startBenchGateway, type Recorder } from './gateway.ts';

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

function tone(ms: number): Int16Array {
  const n = Math.round((SAMPLE_RATE * ms) / 1000);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(16000 * Math.sin((2 * Math.PI * 440 * i) / SAMPLE_RATE));
  return out;
}

export async function runAgents(record: Recorder, rounds = 10): Promise<void> {
  const API_KEY = BENCH_KEY;
  const API_SECRET = BENCH_SECRET;
  const bench = await startBenchGateway();
  const { gw } = bench;
  let heard: ((at: number) => void) | undefined;
  let listening: (() => void) | undefined;
  const agent = defineAgent({
    name: 'bench',
    automatic: true,
    async entry(ctx) {
      const room = await ctx.connect();
      const listen = async (t: RemoteTrackInfo) => {
        if (t.kind !== 'audio') return;
        let loud = false;
        for await (const frame of room.audioFrames(t)) {
          listening?.();
          const now = performance.now();
          const isLoud = rmsDbfs(frame.samples) > -30;
          if (isLoud && !loud) heard?.(now);
          loud = isLoud;
        }
      };
      // A failed listener leaves the round unheard, which the bench reports as a timeout; say why.
      const listenLogged = (t: Parameters<typeof listen>[0]): void => {
        listen(t).catch((err: unknown) => console.error('bench: listening to an agent track failed', err));
      };
      room.on('trackSubscribed', listenLogged);
      room.remoteTracks.forEach(listenLogged);
    },
  });
  const worker = await runWorker(agent, { url: gw.url, apiKey: API_KEY, apiSecret: API_SECRET, capacity: rounds + 2 });
  const api = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
  const people: NodeParticipant[] = [];
  try {
    // Room start → agent joined.
    const joinedAt = new Map<string, number>();
    gw.rooms.on('participantjoined', (room, p) => {
      if (p.kind === ParticipantInfo_Kind.AGENT) joinedAt.set(room.name, performance.now());
    });
    const startLatency: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const name = `bench-agents-${i}`;
      const t0 = performance.now();
      await api.createRoom({ name });
      await waitFor(() => joinedAt.get(name), 30_000, `agent in ${name}`);
      startLatency.push(joinedAt.get(name)! - t0);
      await api.deleteRoom(name);
    }
    startLatency.sort((a, b) => a - b);
    record('agents: room start → agent joined p50', pct(startLatency, 50), 'ms', `${rounds} rooms, in-process worker`);
    record('agents: room start → agent joined p95', pct(startLatency, 95), 'ms');

    // Speech onset → agent hears it.
    const token = await mintToken(API_KEY, API_SECRET, { identity: 'speaker', video: { roomJoin: true, room: 'bench-speech' } });
    const speaker = await NodeParticipant.connect(gw.url, token);
    people.push(speaker);
    const source = new AudioSource();
    const local = await speaker.publishTrack({ kind: 'audio', source: 'microphone' });
    const pub = await PcmPublisher.start(local.writeRtp, source);
    await new Promise<void>((resolve) => (listening = resolve));
    listening = undefined;
    await new Promise((r) => setTimeout(r, 1000)); // decoder settled
    const speechLatency: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const got = new Promise<number>((resolve) => (heard = resolve));
      const t0 = performance.now();
      source.push(tone(300));
      const at = await Promise.race([got, new Promise<number>((r) => setTimeout(() => r(NaN), 10_000))]);
      if (Number.isFinite(at)) speechLatency.push(at - t0);
      heard = undefined;
      await new Promise((r) => setTimeout(r, 700));
    }
    await pub.stop();
    speechLatency.sort((a, b) => a - b);
    record('agents: speech onset → agent hears p50', pct(speechLatency, 50), 'ms', `${speechLatency.length}/${rounds} onsets, PCM→Opus→SFU→PCM`);
    record('agents: speech onset → agent hears p95', pct(speechLatency, 95), 'ms');
  } finally {
    await Promise.all(people.map((p) => p.leave()));
    await worker.close();
    await bench.close();
  }
}
