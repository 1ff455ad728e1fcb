// Egress records in Redis, shared by the API and the workers (hash `roomgate:egress`: id → EgressInfo
// JSON, already redacted). A record that reached a final status is never rewritten to a live one:
// the write is a Lua compare-and-set on the status, so a late ENDING cannot undo a COMPLETE.
// Which status follows which is src/egress/status.ts's; EgressRecords applies it to every write.
import { EgressInfo } from '@livekit/protocol';
import type { Redis } from 'ioredis';
import { nowNs } from '../time.ts';
import { isFinal } from './status.ts';

export { FINAL_STATUSES, isFinal } from './status.ts';

// KEYS[1] records, KEYS[2] statuses; ARGV: id, json, status, allowFinalRewrite.
// Returns 1 when written, 0 when the stored status is final (and the rewrite not allowed).
const PUT_SCRIPT = `
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur and ARGV[4] ~= '1' and (cur == '3' or cur == '4' or cur == '5' or cur == '6') then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1`;

export class EgressStore {
  readonly #redis: Redis;
  readonly #records: string;
  readonly #statuses: string;
  readonly #prefix: string;

  constructor(redis: Redis, prefix = 'roomgate') {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#records = `${prefix}:egress`;
    this.#statuses = `${prefix}:egress:status`;
  }

  async get(egressId: string): Promise<EgressInfo | undefined> {
    const json = await this.#redis.hget(this.#records, egressId);
    return json ? EgressInfo.fromJsonString(json, { ignoreUnknownFields: true }) : undefined;
  }

  async list(filter: { roomName?: string; egressId?: string; active?: boolean } = {}): Promise<EgressInfo[]> {
    const all = filter.egressId
      ? [await this.#redis.hget(this.#records, filter.egressId)].filter((j): j is string => j !== null)
      : Object.values(await this.#redis.hgetall(this.#records));
    return all
      .map((j) => EgressInfo.fromJsonString(j, { ignoreUnknownFields: true }))
      .filter((i) => (!filter.roomName || i.roomName === filter.roomName) && (!filter.active || !isFinal(i.status)))
      .sort((a, b) => (a.updatedAt < b.updatedAt ? -1 : 1));
  }

  /** Writes the record unless it is already final (returns false then). `updatedAt` is set here. */
  async put(info: EgressInfo, opts: { allowFinalRewrite?: boolean } = {}): Promise<boolean> {
    info.updatedAt = nowNs();
    const written = await this.#redis.eval(
      PUT_SCRIPT,
      2,
      this.#records,
      this.#statuses,
      info.egressId,
      info.toJsonString(),
      String(info.status),
      opts.allowFinalRewrite ? '1' : '0',
    );
    return written === 1;
  }

  /**
   * Read-modify-write; the mutation sees the stored record and returns false to leave it unwritten.
   * Returns the record as stored afterwards.
   */
  async update(egressId: string, mutate: (info: EgressInfo) => void | false, opts: { allowFinalRewrite?: boolean } = {}): Promise<EgressInfo | undefined> {
    const info = await this.get(egressId);
    if (!info) return undefined;
    if (isFinal(info.status) && !opts.allowFinalRewrite) return info;
    if (mutate(info) === false) return info;
    if (await this.put(info, opts)) return info;
    return this.get(egressId);
  }

  /** StopEgress leaves a mark, so a worker that picks the job up (or recovers it) later knows. */
  async markStopRequested(egressId: string): Promise<void> {
    await this.#redis.set(`${this.#prefix}:egress:stop:${egressId}`, '1', 'EX', 7 * 24 * 3600);
  }

  async stopRequested(egressId: string): Promise<boolean> {
    return (await this.#redis.exists(`${this.#prefix}:egress:stop:${egressId}`)) === 1;
  }

  /** Files waiting in the backup folder for an upload retry: id → JSON the storage module owns. */
  async putPendingUpload(key: string, json: string): Promise<void> {
    await this.#redis.hset(`${this.#prefix}:egress:pending-uploads`, key, json);
  }

  async deletePendingUpload(key: string): Promise<void> {
    await this.#redis.hdel(`${this.#prefix}:egress:pending-uploads`, key);
  }

  async pendingUploads(): Promise<Record<string, string>> {
    return this.#redis.hgetall(`${this.#prefix}:egress:pending-uploads`);
  }
}
