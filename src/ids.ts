// LiveKit-style resource ids: a type prefix and 12 random base62 characters (~71 bits), like guid.New.
import { randomBytes, randomInt } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export type IdPrefix = 'RM_' | 'PA_' | 'TR_' | 'EV_' | 'IN_' | 'EG_' | 'RT_' | 'WH_' | 'UR_' | 'AD_' | 'AJ_' | 'AW_' | 'ST_' | 'SDR_' | 'SCL_';

export function newId(prefix: IdPrefix, length = 12): string {
  let out = prefix;
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}

/** `bits` random bits from the CSPRNG as base64url: stream keys and session ids that must not be guessed. */
export function newSecret(bits = 128): string {
  return randomBytes(Math.ceil(bits / 8)).toString('base64url');
}
