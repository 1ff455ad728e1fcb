import { describe, expect, it } from 'vitest';
import { FrameQueue, rmsDbfs } from '../../src/agents/audio.ts';
import { workerMessageSchemas } from '../../src/agents/protocol.ts';
import { isLiveKitWorkerUpgrade } from '../../src/agents/server/LiveKitWorkers.ts';
import { defineAgent, runWorker } from '../../src/agents/worker.ts';

describe('agent SDK pieces', () => {
  it('rmsDbfs: silence, full-scale square, a sine at half scale', () => {
    expect(rmsDbfs(new Int16Array(960))).toBe(-Infinity);
    expect(rmsDbfs(new Int16Array(960).fill(-32768))).toBeCloseTo(0, 5);
    const sine = Int16Array.from({ length: 960 }, (_, i) => Math.round(16384 * Math.sin((2 * Math.PI * i) / 96)));
    expect(rmsDbfs(sine)).toBeCloseTo(-9.03, 1);
  });

  it('FrameQueue hands items to a waiting reader, drops the oldest beyond its bound, and ends', async () => {
    const q = new FrameQueue<number>(2);
    const waiting = q.next();
    q.push(1);
    expect(await waiting).toEqual({ value: 1, done: false });
    q.push(2);
    q.push(3);
    q.push(4);
    q.end();
    const rest: number[] = [];
    for await (const n of q) rest.push(n);
    expect(rest).toEqual([3, 4]);
  });

  it('tells a LiveKit worker (Bearer header only) from a roomgate worker (access_token query) at /agent', () => {
    expect(isLiveKitWorkerUpgrade(new URL('http://g/agent'), 'Bearer abc')).toBe(true);
    expect(isLiveKitWorkerUpgrade(new URL('http://g/agent?access_token=x'), undefined)).toBe(false);
    expect(isLiveKitWorkerUpgrade(new URL('http://g/agent?access_token=x'), 'Bearer abc')).toBe(false);
    expect(isLiveKitWorkerUpgrade(new URL('http://g/agent'), undefined)).toBe(false);
  });

  it('defineAgent refuses names the gateway would refuse', () => {
    expect(() => defineAgent({ name: 'has space', entry: () => undefined })).toThrow(TypeError);
    expect(defineAgent({ name: 'ok.name-1', entry: () => undefined }).name).toBe('ok.name-1');
  });

  it('register defaults to capacity 1, explicit dispatch; unknown fields are refused', () => {
    expect(workerMessageSchemas.register.parse({ type: 'register', agentName: 'a' })).toEqual({ type: 'register', agentName: 'a', capacity: 1, automatic: false });
    expect(workerMessageSchemas.register.safeParse({ type: 'register', agentName: 'a', extra: 1 }).success).toBe(false);
    expect(workerMessageSchemas.load.safeParse({ type: 'load', load: 1.5 }).success).toBe(false);
  });

  it('runWorker refuses a capacity the gateway would refuse, before connecting', async () => {
    const agent = defineAgent({ name: 'a', entry: () => undefined });
    const opts = { url: 'http://127.0.0.1:9', apiKey: 'k', apiSecret: 's' };
    await expect(runWorker(agent, { ...opts, capacity: 0 })).rejects.toThrow(/capacity/);
    await expect(runWorker(agent, { ...opts, capacity: 1001 })).rejects.toThrow(/capacity/);
    await expect(runWorker(agent, { ...opts, capacity: 1.5 })).rejects.toThrow(/capacity/);
  });
});
