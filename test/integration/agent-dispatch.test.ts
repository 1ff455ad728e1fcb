// Dispatch through the real AgentDispatchClient, failover when a worker dies (and its webhooks),
// load spreading, jobs waiting for capacity, agents as dependent participants, roomConfig.agents in
// a join token, job token scope, and bad input on /agent.
import { JobStatus } from '@livekit/protocol';
import { AccessToken, AgentDispatchClient, RoomAgentDispatch, RoomConfiguration, RoomServiceClient, TwirpError, WebhookReceiver } from 'livekit-server-sdk';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineAgent, runWorker, type AgentWorker } from '../../src/agents/index.ts';
import idle from '../fixtures/agents/idle.ts';
import { NodeParticipant } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { spawnWorker, workerOptions, type WorkerProcess } from '../helpers/agents.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/net.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { startWebhookSink, type WebhookSink } from '../helpers/webhookSink.ts';

let redis: TestRedis;
let sink: WebhookSink;
let gw: Gateway;
let dispatch: AgentDispatchClient;
let api: RoomServiceClient;
const workers: WorkerProcess[] = [];
const inProcess: AgentWorker[] = [];
const people: NodeParticipant[] = [];

beforeAll(async () => {
  redis = await startRedis();
  sink = await startWebhookSink();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_AGENTS_OFFER_TIMEOUT: '2', ROOMGATE_WEBHOOK_URLS: sink.url });
  dispatch = new AgentDispatchClient(gw.url, API_KEY, API_SECRET);
  api = new RoomServiceClient(gw.url, API_KEY, API_SECRET);
});

afterAll(async () => {
  await Promise.all(people.map((p) => p.leave()));
  await Promise.all(inProcess.map((w) => w.close()));
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  await gw?.close();
  await sink?.close();
  await redis?.stop();
});

const receiver = new WebhookReceiver(API_KEY, API_SECRET);

/** agent_job_* webhooks received for one job, in arrival order. */
async function jobWebhooks(jobId: string) {
  const events = await Promise.all(sink.received.map((r) => receiver.receive(r.body, r.auth)));
  return events.filter((e) => e.event.startsWith('agent_job_') && e.job?.id === jobId);
}

async function start(name: string, capacity = 1): Promise<AgentWorker> {
  const w = await runWorker(defineAgent({ ...idle, name }), { ...workerOptions(gw), capacity });
  inProcess.push(w);
  return w;
}

/** The job of the room's only dispatch once it is running, on the given worker if one is named. */
async function runningJob(room: string, workerId?: string) {
  return waitFor(
    async () => {
      const [d] = await dispatch.listDispatch(room);
      const job = d?.state?.jobs[0];
      return job?.state?.status === JobStatus.JS_RUNNING && (!workerId || job?.state?.workerId === workerId) ? job : undefined;
    },
    30_000,
    `a running job in ${room}${workerId ? ` on ${workerId}` : ''}`,
  );
}

/** Opens /agent with `token`; resolves with the messages received and how the socket closed. */
function rawAgentSocket(token: string | undefined) {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/agent${token ? `?access_token=${token}` : ''}`);
  const messages: { type: string; code?: string; message?: string; workerId?: string; jobId?: string; job?: { id: string; token: string } }[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(String(d)) as (typeof messages)[number]));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  const opened = new Promise<void>((resolve) => ws.on('open', () => resolve()));
  return { ws, messages, closed, opened };
}

describe('agent dispatch', () => {
  it('CreateDispatch/ListDispatch/DeleteDispatch; a killed worker\'s job moves to another worker', async () => {
    const first = await spawnWorker(gw, 'test/fixtures/agents/idle.ts', 'failover', { AGENT_NAME: 'failover' });
    workers.push(first);
    const firstId = gw.agents.workers().find((w) => w.agentName === 'failover')!.id;
    await api.createRoom({ name: 'dispatch-room' });
    const created = await dispatch.createDispatch('dispatch-room', 'failover', { metadata: '{"lang":"en"}' });
    expect(created).toMatchObject({ agentName: 'failover', room: 'dispatch-room', metadata: '{"lang":"en"}' });
    expect(created.id).toMatch(/^AD_/);
    const job = await runningJob('dispatch-room', firstId);
    expect(job.dispatchId).toBe(created.id);
    const identity = `agent-${job.id}`;
    await waitFor(async () => (await api.listParticipants('dispatch-room')).some((p) => p.identity === identity) || undefined, 20_000, 'agent in room');

    const second = await start('failover');
    first.child.kill('SIGKILL');
    const moved = await runningJob('dispatch-room', second.id);
    expect(moved.id).toBe(job.id);
    // Same identity: the new agent participant replaces the dead worker's.
    await waitFor(() => (second.activeJobs.some((j) => j.id === job.id && j.attempt === 2) ? true : undefined), 20_000, 'job on the second worker');

    // Running again: the dead attempt's error no longer describes the job.
    expect(moved.state?.error).toBe('');

    expect((await dispatch.getDispatch(created.id, 'dispatch-room'))?.id).toBe(created.id);
    await dispatch.deleteDispatch(created.id, 'dispatch-room');
    expect(await dispatch.listDispatch('dispatch-room')).toEqual([]);
    await waitFor(() => (second.activeJobs.length === 0 ? true : undefined), 20_000, 'the job to end on the worker');
    await waitFor(async () => !(await api.listParticipants('dispatch-room')).some((p) => p.identity === identity) || undefined, 20_000, 'agent gone');

    // Every agent_job_started has its agent_job_ended: the dead attempt ends failed, the next one runs.
    const hooks = await waitFor(async () => {
      const list = await jobWebhooks(job.id);
      return list.length >= 4 ? list : undefined;
    }, 20_000, 'four job webhooks');
    expect(hooks.map((e) => e.event)).toEqual(['agent_job_started', 'agent_job_ended', 'agent_job_started', 'agent_job_ended']);
    expect(hooks[1]!.job?.state).toMatchObject({ status: JobStatus.JS_FAILED, workerId: firstId });
    expect(hooks[1]!.job?.state?.error).toMatch(/disconnected/);
    expect(hooks[2]!.job?.state).toMatchObject({ status: JobStatus.JS_RUNNING, workerId: second.id, error: '' });
    expect(hooks[3]!.job?.state?.status).toBe(JobStatus.JS_SUCCESS);
  });

  it('a job waiting for a free worker runs once capacity frees up', async () => {
    const only = await start('queued', 1);
    await api.createRoom({ name: 'queue-a' });
    await api.createRoom({ name: 'queue-b' });
    await dispatch.createDispatch('queue-a', 'queued');
    const first = await runningJob('queue-a', only.id);
    await dispatch.createDispatch('queue-b', 'queued');
    // The worker is full: the second job waits, pending.
    const [waiting] = await dispatch.listDispatch('queue-b');
    expect(waiting?.state?.jobs[0]?.state?.status).toBe(JobStatus.JS_PENDING);
    expect(only.activeJobs.map((j) => j.id)).toEqual([first.id]);
    await api.deleteRoom('queue-a');
    const second = await runningJob('queue-b', only.id);
    expect(second.id).not.toBe(first.id);
    await api.deleteRoom('queue-b');
  });

  it('agents are dependent participants: no max_participants slot, and they do not keep a room open', async () => {
    const worker = await start('dependent');
    await api.createRoom({ name: 'dependent-room', maxParticipants: 1, departureTimeout: 1 });
    const dave = await join(gw.url, 'dependent-room', 'dave');
    await dispatch.createDispatch('dependent-room', 'dependent');
    const job = await runningJob('dependent-room', worker.id);
    // The room is "full" with dave, yet the agent joins.
    await waitFor(async () => (await api.listParticipants('dependent-room')).some((p) => p.identity === `agent-${job.id}`) || undefined, 20_000, 'agent in the full room');
    await dave.leave();
    // Left with its agent only, the room closes after departure_timeout, and the job ends with it.
    await waitFor(async () => ((await api.listRooms(['dependent-room'])).length === 0 ? true : undefined), 20_000, 'room closed');
    await waitFor(() => (worker.activeJobs.length === 0 ? true : undefined), 20_000, 'the job to end');

    // Nobody but an agent ever joins: empty_timeout still closes the room.
    await api.createRoom({ name: 'agent-only', emptyTimeout: 3 });
    await dispatch.createDispatch('agent-only', 'dependent').catch(() => undefined); // the room may be gone already
    await waitFor(async () => ((await api.listRooms(['agent-only'])).length === 0 ? true : undefined), 30_000, 'agent-only room closed');
    await waitFor(() => (worker.activeJobs.length === 0 ? true : undefined), 20_000, 'its job to end');
  });

  it('job tokens: only for the accepted job\'s room join, not for /agent; an agent that ignores terminate is removed', async () => {
    const at = new AccessToken(API_KEY, API_SECRET, { identity: 'manual' });
    at.addGrant({ agent: true });
    const w = rawAgentSocket(await at.toJwt());
    await w.opened;
    w.ws.send(JSON.stringify({ type: 'register', agentName: 'manual' }));
    await waitFor(() => w.messages.some((m) => m.type === 'registered') || undefined, 10_000, 'manual worker registered');
    await api.createRoom({ name: 'manual-room' });
    const d = await dispatch.createDispatch('manual-room', 'manual');
    const offer = await waitFor(() => w.messages.find((m) => m.type === 'offer'), 10_000, 'an offer');
    const token = offer.job!.token;

    // The job's join token cannot register a worker.
    const asWorker = rawAgentSocket(token);
    const refused = await asWorker.closed;
    expect(refused.code).toBe(4403);
    expect(asWorker.messages[0]).toMatchObject({ type: 'error', code: 'permission_denied' });

    // Nor join before the offer is accepted.
    await expect(NodeParticipant.connect(gw.url, token)).rejects.toThrow();
    w.ws.send(JSON.stringify({ type: 'accept', jobId: offer.job!.id }));
    const agent = await waitFor(
      () => NodeParticipant.connect(gw.url, token).catch(() => undefined),
      10_000,
      'the agent to join once accepted',
    );
    const identity = `agent-${offer.job!.id}`;
    await dispatch.deleteDispatch(d.id, 'manual-room');
    await waitFor(() => w.messages.some((m) => m.type === 'terminate' && m.jobId === offer.job!.id) || undefined, 10_000, 'terminate');
    // This worker ignores terminate: the gateway removes its agent after a short grace period.
    await waitFor(async () => !(await api.listParticipants('manual-room')).some((p) => p.identity === identity) || undefined, 20_000, 'agent removed');
    await agent.leave();
    w.ws.close();
    await api.deleteRoom('manual-room');
  });

  it('spreads jobs over workers by load', async () => {
    const a = await start('spread', 2);
    const b = await start('spread', 2);
    await api.createRoom({ name: 'spread-room' });
    await dispatch.createDispatch('spread-room', 'spread');
    await dispatch.createDispatch('spread-room', 'spread');
    await waitFor(() => (a.activeJobs.length + b.activeJobs.length === 2 ? true : undefined), 30_000, 'two jobs running');
    expect([a.activeJobs.length, b.activeJobs.length]).toEqual([1, 1]);
    await api.deleteRoom('spread-room');
    await waitFor(() => (a.activeJobs.length + b.activeJobs.length === 0 ? true : undefined), 20_000, 'jobs ended with the room');
  });

  it('dispatches the agents a join token\'s roomConfig asks for', async () => {
    await start('configured');
    const at = new AccessToken(API_KEY, API_SECRET, { identity: 'carol' });
    at.addGrant({ roomJoin: true, room: 'config-room' });
    at.roomConfig = new RoomConfiguration({ agents: [new RoomAgentDispatch({ agentName: 'configured', metadata: 'from token' })] });
    people.push(await NodeParticipant.connect(gw.url, await at.toJwt()));
    const [d] = await waitFor(async () => {
      const list = await dispatch.listDispatch('config-room');
      return list.length ? list : undefined;
    }, 10_000, 'dispatch from roomConfig');
    expect(d).toMatchObject({ agentName: 'configured', metadata: 'from token' });
    await runningJob('config-room');
  });

  it('refuses bad workers and bad messages with clear errors, and stays up', async () => {
    const none = rawAgentSocket(undefined);
    expect((await none.closed).code).toBe(4401);

    const joinOnly = new AccessToken(API_KEY, API_SECRET, { identity: 'w' });
    joinOnly.addGrant({ roomJoin: true, room: 'x' });
    const noGrant = rawAgentSocket(await joinOnly.toJwt());
    const refused = await noGrant.closed;
    expect(refused.code).toBe(4403);
    expect(refused.reason).toMatch(/agent grant/);
    expect(noGrant.messages[0]).toMatchObject({ type: 'error', code: 'permission_denied' });

    const good = new AccessToken(API_KEY, API_SECRET, { identity: 'w' });
    good.addGrant({ agent: true });
    const s = rawAgentSocket(await good.toJwt());
    await s.opened;
    s.ws.send('{not json');
    s.ws.send(JSON.stringify([1, 2]));
    s.ws.send(JSON.stringify({ type: 'explode' }));
    s.ws.send(JSON.stringify({ type: 'accept', jobId: 'AJ_x' }));
    s.ws.send(JSON.stringify({ type: 'register', agentName: 'bad name!' }));
    s.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    s.ws.send(JSON.stringify({ type: 'register', agentName: 'raw', capacity: 1 }));
    s.ws.send(JSON.stringify({ type: 'update', jobId: 'AJ_nope', status: 'done' }));
    s.ws.send(JSON.stringify({ type: 'load', load: 7 }));
    await waitFor(() => (s.messages.length >= 9 ? true : undefined), 10_000, 'nine answers');
    expect(s.messages.map((m) => m.type === 'error' ? m.code : m.type)).toEqual([
      'malformed',
      'malformed',
      'malformed',
      'failed_precondition',
      'invalid_argument',
      'malformed',
      'registered',
      'not_found',
      'invalid_argument',
    ]);
    expect(s.messages[2]!.message).toMatch(/unknown message type 'explode'/);
    expect(s.messages[4]!.message).toMatch(/agentName/);
    s.ws.close();

    // A dispatch for a room that does not exist.
    const err = await dispatch.createDispatch('no-such-room', 'raw').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TwirpError);
    expect((err as TwirpError).code).toBe('not_found');
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });

  it('an offer a worker leaves unanswered goes to another worker after agents.offer_timeout', async () => {
    const at = new AccessToken(API_KEY, API_SECRET, { identity: 'silent' });
    at.addGrant({ agent: true });
    const silent = rawAgentSocket(await at.toJwt());
    await silent.opened;
    silent.ws.send(JSON.stringify({ type: 'register', agentName: 'patient' }));
    await waitFor(() => silent.messages.some((m) => m.type === 'registered') || undefined, 10_000, 'silent registered');
    const answering = await start('patient');
    await api.createRoom({ name: 'patient-room' });
    await dispatch.createDispatch('patient-room', 'patient');
    await runningJob('patient-room', answering.id);
    // Registered first with the same load, the silent worker got the offer first and let it lapse.
    expect(silent.messages.some((m) => m.type === 'offer')).toBe(true);
    silent.ws.close();
  });

  it('a job whose room was deleted before the agent joined fails clearly instead of re-creating the room', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const worker = await runWorker(
      defineAgent({
        name: 'late',
        async entry(ctx) {
          await gate;
          await ctx.connect();
        },
      }),
      workerOptions(gw),
    );
    inProcess.push(worker);
    const ended = new Promise<[string, string | undefined]>((resolve) => worker.on('jobEnded', (_job, status, error) => resolve([status, error])));
    await api.createRoom({ name: 'doomed' });
    await dispatch.createDispatch('doomed', 'late');
    await runningJob('doomed');
    await api.deleteRoom('doomed');
    release();
    const [status, error] = await ended;
    expect(status).toBe('failed');
    expect(error).toMatch(/ended/);
    expect(await api.listRooms(['doomed'])).toEqual([]);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });

  it('a gateway shutting down ends its running jobs: agent_job_ended, and the worker hears terminate', async () => {
    const own = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url, ROOMGATE_WEBHOOK_URLS: sink.url });
    let closed = false;
    try {
      const worker = await runWorker(defineAgent({ ...idle, name: 'shutdown' }), workerOptions(own));
      inProcess.push(worker);
      const ended = new Promise<void>((resolve) => worker.on('jobEnded', () => resolve()));
      await new RoomServiceClient(own.url, API_KEY, API_SECRET).createRoom({ name: 'shutdown-room' });
      await new AgentDispatchClient(own.url, API_KEY, API_SECRET).createDispatch('shutdown-room', 'shutdown');
      const jobId = await waitFor(() => own.agents.workers().find((w) => w.agentName === 'shutdown')?.jobs[0], 20_000, 'the job accepted');
      await waitFor(() => (own.agents.job(jobId)?.state?.status === JobStatus.JS_RUNNING ? true : undefined), 20_000, 'the job running');
      await own.close();
      closed = true;
      await ended;
      const hooks = await waitFor(async () => {
        const list = await jobWebhooks(jobId);
        return list.some((e) => (e.event as string) === 'agent_job_ended') ? list : undefined;
      }, 10_000, 'agent_job_ended');
      expect(hooks.map((e) => e.event)).toEqual(['agent_job_started', 'agent_job_ended']);
      expect(hooks[1]!.job?.state).toMatchObject({ status: JobStatus.JS_FAILED, error: 'gateway shutting down' });
      await worker.close();
    } finally {
      if (!closed) await own.close();
    }
  });
});
