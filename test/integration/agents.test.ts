// The example agents against a real gateway: the moderator (a worker child process) mutes a loud
// participant and says why; the echo bot (in-process worker) plays a speaker back into the room.
import { RoomServiceClient, WebhookReceiver } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import echo from '../../examples/echo.ts';
import { PcmPublisher, RtpAudioDecoder, rmsDbfs } from '../../src/agents/audio.ts';
import { runWorker, type AgentWorker } from '../../src/agents/index.ts';
import type { NodeParticipant, RemoteTrack } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { runningFfmpegPids } from '../../src/media/ffmpeg.ts';
import { spawnWorker, workerOptions, type WorkerProcess } from '../helpers/agents.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join, nextEvent } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let sink: WebhookSink;
let gw: Gateway;
const people: NodeParticipant[] = [];
const workers: WorkerProcess[] = [];
const inProcess: AgentWorker[] = [];
const receiver = new WebhookReceiver(API_KEY, API_SECRET);

beforeAll(async () => {
  redis = await startRedis();
  sink = await startWebhookSink();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_WEBHOOK_URLS: sink.url });
});

afterAll(async () => {
  await Promise.all(people.map((p) => p.leave()));
  await Promise.all(inProcess.map((w) => w.close()));
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await gw?.close();
  await sink?.close();
  await redis?.stop();
});

const tone = (volume: number, extra: string[] = []) => ['-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-af', `volume=${volume}`, ...extra];

describe('agents', () => {
  it('moderator example: mutes a participant who stays loud, says why, and the job webhooks verify', async () => {
    const worker = await spawnWorker(gw, 'examples/moderator.ts', 'moderator');
    workers.push(worker);
    const alice = await join(gw.url, 'loud-room', 'alice');
    people.push(alice);
    const explained = nextEvent(alice, 'dataReceived', (m) => m.topic === 'moderation', 60_000);
    // sine is 1/8 of full scale; ×6 is about -5 dBFS RMS, far above the -20 dBFS threshold.
    const audio = await alice.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: tone(6) });
    const api = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
    await waitFor(
      async () => {
        const p = await api.getParticipant('loud-room', 'alice');
        return p.tracks.find((t) => t.sid === audio.trackSid)?.muted || undefined;
      },
      45_000,
      'the moderator to mute alice',
    );
    const [message] = await explained;
    const body = JSON.parse(new TextDecoder().decode(message.payload)) as { type: string; identity: string; trackSid: string; reason: string };
    expect(body).toMatchObject({ type: 'muted', identity: 'alice', trackSid: audio.trackSid });
    expect(body.reason).toMatch(/dBFS/);
    expect(message.from).toMatch(/^agent-AJ_/);

    const agents = (await api.listParticipants('loud-room')).filter((p) => p.identity.startsWith('agent-'));
    expect(agents).toHaveLength(1);
    expect(agents[0]!.attributes['lk.agent.name']).toBe('moderator');

    await audio.stop();
    await api.deleteRoom('loud-room');
    const events = async () => Promise.all(sink.received.map((r) => receiver.receive(r.body, r.auth)));
    await waitFor(async () => ((await events()).some((e) => (e.event as string) === 'agent_job_ended') ? true : undefined), 20_000, 'agent_job_ended');
    const jobEvents = (await events()).filter((e) => e.event.startsWith('agent_job_'));
    expect(jobEvents.map((e) => e.event)).toEqual(['agent_job_started', 'agent_job_ended']);
    for (const e of jobEvents) {
      expect(e.job?.agentName).toBe('moderator');
      expect(e.room?.name).toBe('loud-room');
      expect(e.job?.id).toBe(jobEvents[0]!.job?.id);
    }
    expect(jobEvents[0]!.job?.state?.participantIdentity).toBe(agents[0]!.identity);
    await worker.kill();
    await waitFor(() => !gw.agents.workers().some((w) => w.agentName === 'moderator') || undefined, 10_000, 'moderator gone');
  });

  it('echo example: a speaker hears their own voice back from the agent', async () => {
    const worker = await runWorker(echo, workerOptions(gw));
    inProcess.push(worker);
    const bob = await join(gw.url, 'echo-room', 'bob');
    people.push(bob);
    const fromAgent = nextEvent(bob, 'trackSubscribed', (t) => t.participantIdentity.startsWith('agent-') && t.kind === 'audio', 30_000);
    // 1.5 s of tone, 1.5 s of silence, repeated: each pause makes the agent play the phrase back.
    await bob.publishFromFfmpeg({ kind: 'audio', source: 'microphone', input: tone(1, []).map((a) => (a === 'volume=1' ? "volume='if(lt(mod(t,3),1.5),1,0)':eval=frame" : a)) });
    const [track] = (await fromAgent) as [RemoteTrack];
    const decoder = new RtpAudioDecoder(track.track);
    let loudest = -Infinity;
    const giveUp = setTimeout(() => decoder.close(), 30_000);
    try {
      for await (const frame of decoder.frames()) {
        loudest = Math.max(loudest, rmsDbfs(frame.samples));
        if (loudest > -40) break;
      }
    } finally {
      clearTimeout(giveUp);
      decoder.close();
    }
    expect(loudest, 'loudest level decoded from the agent track (dBFS)').toBeGreaterThan(-40);

    // Leaving stops every FFmpeg: the speaker's encoder, the agent's decoder and encoder.
    await bob.leave();
    await worker.close();
    await waitFor(() => (runningFfmpegPids().length === 0 ? true : undefined), 10_000, 'no FFmpeg left');
  });

  it('a PCM source that throws ends the publisher quietly instead of crashing the worker', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      async function* failing(): AsyncGenerator<Int16Array> {
        yield new Int16Array(960);
        throw new Error('tts went away');
      }
      const pub = await PcmPublisher.start(() => undefined, failing());
      await pub.finished; // resolves: the failure is logged, not thrown
      await pub.stop();
      await new Promise((r) => setTimeout(r, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
