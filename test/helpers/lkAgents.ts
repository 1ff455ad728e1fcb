// Stock @livekit/agents workers (test/fixtures/lk-agent) as processes a test can kill, and how their
// agent shows in a room: shared by the agent tests in test/e2e and test/faults.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ParticipantKind, type RemoteParticipant, type Room } from '@livekit/rtc-node';
import { API_KEY, API_SECRET } from './gateway.ts';
import { waitFor } from './net.ts';

const WORKER = fileURLToPath(new URL('../fixtures/lk-agent/worker.mjs', import.meta.url));

export interface StockWorker {
  proc: ChildProcess;
  /** The worker id the gateway gave it at registration. */
  id: string;
  /** SIGKILL to the worker's process group: the worker and its job processes, with no goodbye. */
  kill(): Promise<void>;
}

/** A worker process (its own process group, with the job processes it forks); resolves once registered. */
export async function startStockWorker(gatewayUrl: string, agentName: string): Promise<StockWorker> {
  const proc = spawn(process.execPath, [WORKER, gatewayUrl.replace('http', 'ws'), API_KEY, API_SECRET, agentName], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const kill = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    process.kill(-proc.pid!, 'SIGKILL');
    await exited;
  };
  try {
    const id = await waitFor(() => /^worker-id=(\S+)$/m.exec(out)?.[1] ?? (proc.exitCode !== null ? Promise.reject(new Error(`worker exited: ${out}`)) : undefined), 30_000, `worker ${agentName} registered`);
    return { proc, id, kill };
  } catch (err) {
    await kill();
    throw err;
  }
}

/** `n` workers of one agent name, started together; none is left running when one fails to start. */
export async function startStockWorkers(gatewayUrl: string, agentName: string, n: number): Promise<StockWorker[]> {
  const started = await Promise.allSettled(Array.from({ length: n }, () => startStockWorker(gatewayUrl, agentName)));
  const failed = started.find((r) => r.status === 'rejected');
  if (!failed) return started.map((r) => (r as PromiseFulfilledResult<StockWorker>).value);
  for (const r of started) if (r.status === 'fulfilled') await r.value.kill();
  throw failed.reason;
}

/** The agent participant once its state attribute is `state`. */
export function agentIn(room: Room, state: string): Promise<RemoteParticipant> {
  return waitFor(() => [...room.remoteParticipants.values()].find((p) => p.kind === ParticipantKind.AGENT && p.attributes['lk.agent.state'] === state), 45_000, `agent ${state}`);
}
