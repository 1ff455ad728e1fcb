import { describe, expect, it } from 'vitest';
import { Shutdown } from '../../src/gateway/shutdown.ts';
import type { Logger } from '../../src/logger.ts';

function recordingLog(): { log: Logger; errors: [Record<string, unknown>, string][] } {
  const errors: [Record<string, unknown>, string][] = [];
  const log = { error: (fields: Record<string, unknown>, msg: string) => errors.push([fields, msg]) } as unknown as Logger;
  return { log, errors };
}

describe('Shutdown', () => {
  it('runs stages in their fixed order whatever the registration order, steps of a stage in registration order', async () => {
    const { log } = recordingLog();
    const s = new Shutdown(log);
    const ran: string[] = [];
    s.at('embedded redis', () => void ran.push('embedded redis'));
    s.at('rooms', () => void ran.push('rooms'));
    s.at('publishers', async () => {
      await Promise.resolve();
      ran.push('publishers 1');
    });
    s.at('egress worker', () => void ran.push('egress worker'));
    s.at('publishers', () => void ran.push('publishers 2'));
    await s.run();
    expect(ran).toEqual(['egress worker', 'publishers 1', 'publishers 2', 'rooms', 'embedded redis']);
  });

  it('logs a failing step with its stage and still runs the rest, once however often it is asked', async () => {
    const { log, errors } = recordingLog();
    const s = new Shutdown(log);
    const ran: string[] = [];
    const boom = new Error('boom');
    s.at('http server', () => {
      throw boom;
    });
    s.at('redis', () => void ran.push('redis'));
    await Promise.all([s.run(), s.run()]);
    await s.run();
    expect(ran).toEqual(['redis']);
    expect(errors).toEqual([[{ err: boom, stage: 'http server' }, 'shutdown step failed']]);
  });
});
