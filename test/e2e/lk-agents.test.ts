// Stock @livekit/agents 1.9.0 workers (test/fixtures/lk-agent: the framework's AgentServer in its own
// process, each job in a process it forks) on LiveKit's worker protocol at /agent: dispatched by
// livekit-server-sdk's AgentDispatchClient, the agent joins as kind AGENT, hears the tone of a
// livekit-client page in Chromium, answers with its own tone, which the page plays and measures, and
// sets lk.agent.state; DeleteDispatch ends the job; bad input on the protocol (malformed frames, a
// worker that never answers an offer, an answer for a room deleted meanwhile, bad tokens) leaves
// the server up. A killed worker's job moving to another worker: test/faults/lk-agent-failover.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JobStatus, ServerMessage, WorkerMessage } from '@livekit/protocol';
import { ParticipantKind, type Room } from '@livekit/rtc-node';
import { AccessToken, AgentDispatchClient } from 'livekit-server-sdk';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Gateway } from '../../src/main.ts';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { scaled } from '../helpers/deadline.ts';
import { API_KEY, API_SECRET, SDK_OPTIONS, startTestGateway } from '../helpers/gateway.ts';
import { startStockWorker, type StockWorker } from '../helpers/lkAgents.ts';
import { connectRtcNode } from '../helpers/rtcNode.ts';
import { waitFor } from '../helpers/net.ts';
import { lkPitchOf, openLk } from '../helpers/livekitPage.ts';
import { joinToken } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let browser: Browser;
let worker: StockWorker | undefined;
const rooms: Room[] = [];

beforeAll(async () => {
  redis = await startRedis();
  // A short offer timeout, so the test of a worker that never answers does not wait the default 10 s.
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_AGENTS_OFFER_TIMEOUT: '4' });
  // The page's fake microphone plays a 440 Hz file in a loop (Chromium's own beep is near silence).
  const tone = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'roomgate-lk-agents-')), 'tone.wav');
  const ff = launchFfmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '5', '-ac', '1', '-y', tone]);
  expect(await ff.exited).toBe(0);
  [browser, worker] = await Promise.all([
    launchChromium([`--use-file-for-fake-audio-capture=${tone}`, '--autoplay-policy=no-user-gesture-required']),
    startStockWorker(gw.url, 'tone-echo'),
  ]);
});

afterAll(async () => {
  await Promise.all(rooms.map((r) => r.disconnect()));
  await browser?.close();
  await worker?.kill();
  // No dispose(): see test/e2e/rtc-node.test.ts.
  await gw?.close();
  await redis?.stop();
});

async function connect(room: string, identity: string): Promise<Room> {
  const r = await connectRtcNode(gw.url, room, identity);
  rooms.push(r);
  return r;
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
    expect(listed?.state?.jobs[0]?.state?.workerId).toBe(worker!.id);

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
});
