// A room's media side: one mediasoup Router (participants and tracks join it in the rooms issue).
// close() is idempotent and takes everything the room owns with it, in one cascade.
import type { types } from 'mediasoup';
import { TypedEmitter } from '../emitter.ts';
import type { Logger } from '../logger.ts';
import type { Room, RoomCloseReason, RoomEvents, RoomInfo, ParticipantInfo } from './RoomTypes.ts';

export class RoomImpl extends TypedEmitter<RoomEvents> implements Room {
  readonly #info: RoomInfo;
  readonly #router: types.Router;
  readonly #log: Logger;
  #closed = false;

  constructor({ info, router, log }: { info: RoomInfo; router: types.Router; log: Logger }) {
    super();
    this.#info = info.clone();
    this.#router = router;
    this.#log = log.child({ room: info.name, sid: info.sid });
    // The worker died under us: the room cannot carry media any more, so it ends rather than lingering.
    router.on('workerclose', () => this.close('worker_died'));
    this.onListenerError((event, err) => this.#log.error({ event, err }, 'room event listener threw'));
  }

  get name(): string {
    return this.#info.name;
  }

  get sid(): string {
    return this.#info.sid;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get router(): types.Router {
    return this.#router;
  }

  info(): RoomInfo {
    const info = this.#info.clone();
    info.numParticipants = 0;
    info.numPublishers = 0;
    return info;
  }

  participants(): ParticipantInfo[] {
    return [];
  }

  setMetadata(metadata: string): void {
    this.#info.metadata = metadata;
  }

  close(reason: RoomCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#log.info({ reason }, 'room closed');
    this.#router.close();
    this.safeEmit('@close', reason);
  }
}
