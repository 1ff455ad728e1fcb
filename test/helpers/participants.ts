import { AccessToken, type VideoGrant } from 'livekit-server-sdk';
import { NodeParticipant } from '../../src/client/node.ts';
import { API_KEY, API_SECRET } from './gateway.ts';

export async function joinToken(room: string, identity: string, grant: Partial<VideoGrant> = {}, extra: { name?: string; metadata?: string } = {}) {
  const at = new AccessToken(API_KEY, API_SECRET, { identity, ...extra });
  at.addGrant({ roomJoin: true, room, ...grant });
  return at.toJwt();
}

export async function join(url: string, room: string, identity: string, grant: Partial<VideoGrant> = {}) {
  return NodeParticipant.connect(url, await joinToken(room, identity, grant));
}

/** Resolves with the first emission of `event` that passes `filter`. */
export function nextEvent<T extends unknown[]>(
  emitter: { on(event: string, fn: (...args: T) => void): unknown; off(event: string, fn: (...args: T) => void): unknown },
  event: string,
  filter: (...args: T) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, fn);
      reject(new Error(`timed out waiting for ${event}`));
    }, timeoutMs);
    const fn = (...args: T) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      emitter.off(event, fn);
      resolve(args);
    };
    emitter.on(event, fn);
  });
}
