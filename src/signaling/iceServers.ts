// ICE servers for clients: configured STUN URLs, and TURN with time-limited credentials in coturn's
// `use-auth-secret` scheme (the TURN REST API draft): username `expiry:identity`,
// password base64(HMAC-SHA1(secret, username)). coturn checks both without a user database.
import { createHmac } from 'node:crypto';
import type { IceServer } from '../sfu/ParticipantTypes.ts';

export interface IceConfig {
  stunUrls: string[];
  turnUrls: string[];
  turnSecret?: string | undefined;
  /** Credential lifetime in seconds. */
  turnTtl: number;
}

export function turnCredentials(secret: string, identity: string, ttl: number, now = Date.now()): { username: string; credential: string } {
  const username = `${Math.floor(now / 1000) + ttl}:${identity}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

export function iceServersFor(config: IceConfig, identity: string): IceServer[] {
  const servers: IceServer[] = [];
  if (config.stunUrls.length > 0) servers.push({ urls: config.stunUrls });
  if (config.turnUrls.length > 0 && config.turnSecret) {
    servers.push({ urls: config.turnUrls, ...turnCredentials(config.turnSecret, identity, config.turnTtl) });
  }
  return servers;
}
