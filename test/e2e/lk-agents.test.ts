// Stock @livekit/agents 1.9.0 workers (test/fixtures/lk-agent: the framework's AgentServer in its own
// process, each job in a process it forks) on LiveKit's worker protocol at /agent: dispatched by
// livekit-server-sdk's AgentDispatchClient, the agent joins as kind AGENT, hears the tone of a
// livekit-client page in Chromium, answers with its own tone, which the page plays and measures, and
// sets lk.agent.state; DeleteDispatch ends the job; a killed worker's job goes to the other worker
// (an rtc-node participant speaks there); bad input on the protocol (malformed frames, a
// worker that never answers an offer, an answer for a room deleted meanwhile, bad tokens) leaves
// the server up.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { JobStatus, ServerMessage, WorkerMessage } from '@livekit/protocol';
import {
  AudioFrame,
  AudioSource,
  LocalAudioTrack,
  ParticipantKind,
  Room,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  type RemoteParticipant,
} from '@livekit/rtc-node';
import { AccessToken, AgentDispatchClient } from 'livekit-server-sdk';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Gateway } from '../../src/main.ts';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { scaled } from '../helpers/deadline.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { lkPitchOf, openLk } from '../helpers/livekitPage.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

const WORKER = fileURLToPath(new URL('../fixtures/lk-agent/worker.mjs', import.meta.url));
const RATE = 48_000;

let redis: TestRedis;
let gw: Gateway;
let browser: Browser;
const rooms: Room[] = [];
const workers: ChildProcess[] = [];
const stops: (() => Promise<void>)[] = [];
/** Two stock workers of one agent name, started together (each takes seconds to load the framework). */
let pool: { proc: ChildProcess; id: string }[];

beforeAll(async () => {
  redis = await startRedis();
  // A short offer timeout, so the test of a worker that never answers does not wait the default 10 s.
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_AGENTS_OFFER_TIMEOUT: '4' });
  // The page's fake microphone plays a 440 Hz file in a loop (Chromium's own beep is near silence).
  const tone = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-lk-agents-')), 'tone.wav');
  const ff = launchFfmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '5', '-ac', '1', '-y', tone]);
  expect(await ff.exited).toBe(0);
  [browser, ...pool] = await Promise.all([
    launchChromium([`--use-file-for-fake-audio-capture=${tone}`, '--autoplay-policy=no-user-gesture-required']),
    startWorker('tone-echo'),
    startWorker('tone-echo'),
  ]);
});

afterAll(async () => {
  for (const stop of stops) await stop();
  await Promise.all(rooms.map((r) => r.disconnect()));
  await browser?.close();
  await Promise.all(workers.map((w) => killWorker(w)));
  // No dispose(): see test/e2e/rtc-node.test.ts.
  await gw?.close();
  await redis?.stop();
});

/** A worker process (its own process group, with the job processes it forks); resolves once registered. */
async function startWorker(agentName: string): Promise<{ proc: ChildProcess; id: string }> {
  const proc = spawn(process.execPath, [WORKER, gw.url.replace('http', 'ws'), API_KEY, API_SECRET, agentName], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  workers.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const id = await waitFor(() => /^worker-id=(\S+)$/m.exec(out)?.[1] ?? (proc.exitCode !== null ? Promise.reject(new Error(`worker exited: ${out}`)) : undefined), 30_000, `worker ${agentName} registered`);
  return { proc, id };
}

/** SIGKILL to the worker's process group: the worker and its job processes, with no goodbye. */
async function killWorker(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  process.kill(-proc.pid!, 'SIGKILL');
  await exited;
}

async function connect(room: string, identity: string): Promise<Room> {
  const r = new Room();
  rooms.push(r);
  await r.connect(gw.url.replace('http', 'ws'), await joinToken(room, identity), { autoSubscribe: true, dynacast: false });
  return r;
}

/** A 440 Hz tone on a microphone track. */
async function speak(room: Room): Promise<void> {
  const source = new AudioSource(RATE, 1);
  await room.localParticipant!.publishTrack(LocalAudioTrack.createAudioTrack('voice', source), new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
  let stopped = false;
  let n = 0;
  const loop = (async () => {
    while (!stopped) {
      const data = new Int16Array(RATE / 100);
      for (let i = 0; i < data.length; i++, n++) data[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * n) / RATE));
      await source.captureFrame(new AudioFrame(data, RATE, 1, data.length));
    }
  })();
  stops.push(async () => {
    stopped = true;
    await loop;
    await source.close();
  });
}

/** The agent participant once its state attribute is `state`. */
function agentIn(room: Room, state: string): Promise<RemoteParticipant> {
  return waitFor(() => [...room.remoteParticipants.values()].find((p) => p.kind === ParticipantKind.AGENT && p.attributes['lk.agent.state'] === state), 45_000, `agent ${state}`);
}

describe('stock @livekit/agents workers on /agent', () => {
  it('an explicit dispatch runs a stock agent that hears a livekit-client page and answers it; DeleteDispatch ends it', async () => {
    const page = await openLk(browser, gw.url, 'agent-room', 'user', {}, '&cam=0&processing=off');
    const dispatch = new AgentDispatchClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
    const d = await dispatch.createDispatch('agent-room', 'tone-echo', { metadata: '{"hello":"agent"}' });

    // "speaking" is set once the agent heard sound from the room: the page's tone.
    const agent = await waitFor(
      () =>
        page.evaluate(() => {
          type P = { identity: string; sid: string; kind: number; isAgent: boolean; attributes: Record<string, string> };
          const room = (window as unknown as { lk: { room: { remoteParticipants: Map<string, P> } } }).lk.room;
          const p = [...room.remoteParticipants.values()].find((x) => x.isAgent && x.attributes['lk.agent.state'] === 'speaking');
          return p && { identity: p.identity, kind: p.kind, name: p.attributes['lk.agent.name'] };
        }),
      scaled(45_000),
      'the agent speaking, as the page sees it',
    );
    expect(agent.identity).toMatch(/^agent-AJ_/);
    expect(agent.kind).toBe(ParticipantKind.AGENT);
    expect(agent.name).toBe('tone-echo');
    const hz = await lkPitchOf(page, agent.identity, scaled(20_000));
    expect(hz).toBeGreaterThan(880 * 0.95);
    expect(hz).toBeLessThan(880 * 1.05);
    const [listed] = await dispatch.listDispatch('agent-room');
    expect(listed?.state?.jobs[0]?.state?.status).toBe(JobStatus.JS_RUNNING);
    expect(listed?.state?.jobs[0]?.state?.participantIdentity).toBe(agent.identity);
    expect(pool.map((w) => w.id)).toContain(listed?.state?.jobs[0]?.state?.workerId);

    await dispatch.deleteDispatch(d.id, 'agent-room');
    await waitFor(
      () => page.evaluate((who) => (window as unknown as { lk: { events: { name: string; data: unknown }[] } }).lk.events.some((e) => e.name === 'participantDisconnected' && e.data === who) || undefined, agent.identity),
      scaled(20_000),
      'the agent gone from the page',
    );
  }, 90_000);

  it('drops malformed frames, withdraws offers a worker never answers, terminates jobs of deleted rooms, refuses bad tokens', async () => {
    const at = new AccessToken(API_KEY, API_SECRET);
    at.addGrant({ agent: true });
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/agent`, { headers: { authorization: `Bearer ${await at.toJwt()}` } });
    const frames: ServerMessage[] = [];
    ws.on('message', (data: Buffer) => frames.push(ServerMessage.fromBinary(data)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const next = (what: ServerMessage['message']['case'], after = 0) => waitFor(() => frames.slice(after).find((f) => f.message.case === what), 10_000, what ?? 'frame');
    ws.send(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])); // not a WorkerMessage
    ws.send('{"type":"register"}'); // roomgate's JSON on the LiveKit protocol
    ws.send(new WorkerMessage({ message: { case: 'register', value: { agentName: 'silent' } } }).toBinary());
    const registered = await next('register');
    expect(registered.message.value).toMatchObject({ workerId: expect.stringMatching(/^AW_/) });
    expect(frames[0]?.message.case).toBe('register');
    const workerId = (registered.message.value as { workerId: string }).workerId;

    // Never answered in time: the offer lapses (4 s here), and the late answer takes nothing.
    await connect('agent-silent', 'user3');
    const dispatch = new AgentDispatchClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
    const silent = await dispatch.createDispatch('agent-silent', 'silent');
    const offer = await next('availability');
    const offered = offer.message.case === 'availability' ? offer.message.value.job! : undefined;
    expect(offered).toMatchObject({ id: silent.state?.jobs[0]?.id, agentName: 'silent', room: { name: 'agent-silent' } });
    // The gateway's offer timer was set before this one, in this process: it has fired when this does.
    await new Promise((r) => setTimeout(r, 4500));
    let seen = frames.length;
    ws.send(new WorkerMessage({ message: { case: 'availability', value: { jobId: offered!.id, available: true } } }).toBinary());
    ws.send(new WorkerMessage({ message: { case: 'ping', value: { timestamp: 1n } } }).toBinary());
    expect((await next('pong', seen)).message.value).toMatchObject({ lastTimestamp: 1n });
    const lapsed = (await dispatch.getDispatch(silent.id, 'agent-silent'))?.state?.jobs[0]?.state;
    expect(lapsed).toMatchObject({ status: JobStatus.JS_PENDING, workerId: '' });

    // An answer for a room deleted meanwhile: the job was terminated, and the answer gets no assignment.
    await connect('agent-gone', 'user4');
    seen = frames.length;
    await dispatch.createDispatch('agent-gone', 'silent');
    const goneOffer = await next('availability', seen);
    const goneJob = goneOffer.message.case === 'availability' ? goneOffer.message.value.job! : undefined;
    expect(goneJob?.room?.name).toBe('agent-gone');
    await gw.rooms.deleteRoom('agent-gone');
    const ended = await next('termination', seen);
    expect(ended.message.value).toMatchObject({ jobId: goneJob!.id });
    ws.send(new WorkerMessage({ message: { case: 'availability', value: { jobId: goneJob!.id, available: true } } }).toBinary());
    // Still served: a ping gets its pong, and no assignment came for the deleted room's job.
    ws.send(new WorkerMessage({ message: { case: 'ping', value: { timestamp: 42n } } }).toBinary());
    const pong = await next('pong', seen);
    expect(pong.message.value).toMatchObject({ lastTimestamp: 42n });
    expect(frames.some((f) => f.message.case === 'assignment')).toBe(false);
    ws.close();

    // A worker registered without an agent name is dispatched to every new room, as in LiveKit.
    const auto = new WebSocket(`${gw.url.replace('http', 'ws')}/agent`, { headers: { authorization: `Bearer ${await at.toJwt()}` } });
    const autoFrames: ServerMessage[] = [];
    auto.on('message', (data: Buffer) => autoFrames.push(ServerMessage.fromBinary(data)));
    await new Promise<void>((resolve, reject) => {
      auto.once('open', () => resolve());
      auto.once('error', reject);
    });
    auto.send(new WorkerMessage({ message: { case: 'register', value: { agentName: '' } } }).toBinary());
    await waitFor(() => autoFrames.find((f) => f.message.case === 'register'), 10_000, 'automatic worker registered');
    await connect('agent-auto', 'user5');
    const autoOffer = await waitFor(() => autoFrames.find((f) => f.message.case === 'availability'), 10_000, 'automatic dispatch');
    expect(autoOffer.message.case === 'availability' && autoOffer.message.value.job).toMatchObject({ agentName: '', room: { name: 'agent-auto' } });
    auto.close();

    // A room token is no worker credential; a bad token is refused at the upgrade.
    const statusOf = (token: string) =>
      new Promise<number>((resolve) => {
        const s = new WebSocket(`${gw.url.replace('http', 'ws')}/agent`, { headers: { authorization: `Bearer ${token}` } });
        s.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        s.once('close', (code) => resolve(code));
        s.once('error', () => undefined);
      });
    expect(await statusOf('nope')).toBe(401);
    expect(await statusOf(await joinToken('agent-silent', 'mallory', { agent: true }))).toBe(4403);
  }, 60_000);

  it('a killed worker\'s job goes to another worker, and the room keeps its agent', async () => {
    const user = await connect('agent-failover', 'user2');
    await speak(user);
    const [a, b] = pool as [(typeof pool)[number], (typeof pool)[number]];
    const dispatch = new AgentDispatchClient(gw.url, API_KEY, API_SECRET, SDK_OPTIONS);
    const d = await dispatch.createDispatch('agent-failover', 'tone-echo');
    const first = await agentIn(user, 'speaking');
    const job = await waitFor(async () => (await dispatch.getDispatch(d.id, 'agent-failover'))?.state?.jobs[0], 10_000, 'the job');
    const running = job.state!.workerId;
    expect([a.id, b.id]).toContain(running);

    // SIGKILL the worker and its job process: no goodbye on either socket.
    const victim = running === a.id ? a.proc : b.proc;
    await killWorker(victim);
    const other = running === a.id ? b.id : a.id;
    const moved = await waitFor(
      async () => {
        const j = (await dispatch.getDispatch(d.id, 'agent-failover'))?.state?.jobs[0];
        return j?.state?.workerId === other && j.state.status === JobStatus.JS_RUNNING ? j : undefined;
      },
      30_000,
      'the job running on the other worker',
    );
    expect(moved.id).toBe(job.id);
    // The new attempt's agent (same identity, a new participant) answers again: it heard the tone
    // and published its answer (the answer's sound is measured in the first test).
    const second = await waitFor(
      () => {
        const p = user.remoteParticipants.get(first.identity);
        return p && p.sid !== first.sid && p.attributes['lk.agent.state'] === 'speaking' ? p : undefined;
      },
      45_000,
      'the next attempt\'s agent speaking',
    );
    const published = await waitFor(
      () => [...(user.remoteParticipants.get(second.identity)?.trackPublications.values() ?? [])].find((t) => t.kind === TrackKind.KIND_AUDIO),
      20_000,
      'the next attempt\'s answer track',
    );
    expect(published.source).toBe(TrackSource.SOURCE_MICROPHONE);
    // The dead attempt's agent, replaced by the new one, did not end the job.
    expect((await dispatch.getDispatch(d.id, 'agent-failover'))?.state?.jobs[0]?.state?.status).toBe(JobStatus.JS_RUNNING);

    // Deleting the room ends its running job: the dispatch goes with it and the agent is disconnected.
    await gw.rooms.deleteRoom('agent-failover');
    expect(await dispatch.listDispatch('agent-failover')).toEqual([]);
    await waitFor(() => user.remoteParticipants.size === 0 || !user.isConnected || undefined, scaled(20_000), 'the room emptied');
  }, 90_000);

});
