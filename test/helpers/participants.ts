import { AccessToken, type VideoGrant } from 'livekit-server-sdk';
import { NodeParticipant, type NodeParticipantEvents } from '../../src/client/node.ts';
import { scaled } from './deadline.ts';
import { API_KEY, API_SECRET } from './gateway.ts';

export async function joinToken(room: string, identity: string, grant: Partial<VideoGrant> = {}, extra: { name?: string; metadata?: string } = {}) {
  const at = new AccessToken(API_KEY, API_SECRET, { identity, ...extra });
  at.addGrant({ roomJoin: true, room, ...grant });
  return at.toJwt();
}

export async function join(url: string, room: string, identity: string, grant: Partial<VideoGrant> = {}) {
  return NodeParticipant.connect(url, await joinToken(room, identity, grant));
}

/** Resolves with the arguments of the first `event` that passes `filter`. */
export function nextEvent<K extends keyof NodeParticipantEvents & string>(
  p: NodeParticipant,
  event: K,
  filter: (...args: NodeParticipantEvents[K]) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<NodeParticipantEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.off(event, fn);
      reject(new Error(`timed out waiting for ${event} at ${p.identity}`));
    }, scaled(timeoutMs));
    const fn = (...args: NodeParticipantEvents[K]) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      p.off(event, fn);
      resolve(args);
    };
    p.on(event, fn);
  });
}
