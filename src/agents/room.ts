// The room as an agent sees it: a NodeParticipant underneath, with participants and their
// attributes, typed events, audio of subscribed tracks as PCM frames, PCM publishing, data
// messages, and the room API calls an agent needs (mute someone) signed with the worker's key.
import { MuteRoomTrackRequest } from '@livekit/protocol';
import { mintToken } from '../auth/tokens.ts';
import type { DataMessage } from '../client/session.ts';
import { NodeParticipant, type RemoteTrack } from '../client/node.ts';
import { TypedEmitter } from '../emitter.ts';
import type { Json } from '../signaling/protocol.ts';
import type { Logger } from '../logger.ts';
import { PcmPublisher, RtpAudioDecoder, type AudioFrame } from './audio.ts';

export type { DataMessage };

/** A participant as the agent sees it (from LiveKit's ParticipantInfo). */
export interface AgentParticipant {
  identity: string;
  sid: string;
  name: string;
  metadata: string;
  /** 'standard', 'agent', 'ingress', 'egress', 'sip'. */
  kind: string;
  attributes: Record<string, string>;
}

export interface RemoteTrackInfo {
  trackSid: string;
  participantIdentity: string;
  kind: 'audio' | 'video';
}

export type AgentRoomEvents = {
  participantConnected: [participant: AgentParticipant];
  participantDisconnected: [identity: string];
  /** Attributes, name or metadata of a participant changed. */
  participantUpdated: [participant: AgentParticipant];
  trackSubscribed: [track: RemoteTrackInfo];
  trackUnsubscribed: [trackSid: string];
  trackMuted: [participantIdentity: string, trackSid: string, muted: boolean];
  dataReceived: [message: DataMessage];
  disconnected: [reason: string];
};

export interface LocalAudioTrack {
  trackSid: string;
  /** Resolves when the PCM source has ended. */
  finished: Promise<void>;
  stop(): Promise<void>;
}

export interface AgentRoomOptions {
  url: string;
  apiKey: string;
  apiSecret: string;
  /** Where audio publishing problems (a failing PCM source) are logged. */
  log?: Logger;
}

function toParticipant(p: Json): AgentParticipant {
  return {
    identity: String(p.identity ?? ''),
    sid: String(p.sid ?? ''),
    name: String(p.name ?? ''),
    metadata: String(p.metadata ?? ''),
    kind: String(p.kind ?? 'STANDARD').toLowerCase(),
    attributes: { ...((p.attributes as Record<string, string> | undefined) ?? {}) },
  };
}

export class AgentRoom extends TypedEmitter<AgentRoomEvents> {
  readonly #p: NodeParticipant;
  readonly #opts: AgentRoomOptions;
  readonly #participants = new Map<string, AgentParticipant>();
  readonly #tracks = new Map<string, { info: RemoteTrackInfo; remote: RemoteTrack; decoder?: RtpAudioDecoder }>();
  readonly #publishers = new Set<PcmPublisher>();
  #disconnected = false;

  constructor(participant: NodeParticipant, opts: AgentRoomOptions) {
    super();
    this.#p = participant;
    this.#opts = opts;
    for (const [identity, p] of participant.participants) this.#participants.set(identity, toParticipant(p));
    participant.on('participantConnected', (p) => {
      const ap = toParticipant(p);
      this.#participants.set(ap.identity, ap);
      this.safeEmit('participantConnected', ap);
    });
    participant.on('participantUpdated', (p) => {
      const ap = toParticipant(p);
      this.#participants.set(ap.identity, ap);
      this.safeEmit('participantUpdated', ap);
    });
    participant.on('participantDisconnected', (identity) => {
      this.#participants.delete(identity);
      this.safeEmit('participantDisconnected', identity);
    });
    participant.on('trackSubscribed', (t) => this.#addTrack(t));
    for (const t of participant.remoteTracks) this.#addTrack(t);
    participant.on('trackUnsubscribed', (sid) => {
      this.#tracks.get(sid)?.decoder?.close();
      if (this.#tracks.delete(sid)) this.safeEmit('trackUnsubscribed', sid);
    });
    participant.on('trackMuted', (identity, sid, muted) => this.safeEmit('trackMuted', identity, sid, muted));
    participant.on('dataReceived', (m) => this.safeEmit('dataReceived', m));
    participant.on('disconnected', (reason) => {
      this.#release();
      this.safeEmit('disconnected', reason);
    });
  }

  #addTrack(t: RemoteTrack): void {
    if (this.#tracks.has(t.trackSid)) return;
    const info: RemoteTrackInfo = { trackSid: t.trackSid, participantIdentity: t.participantIdentity, kind: t.kind };
    this.#tracks.set(t.trackSid, { info, remote: t });
    this.safeEmit('trackSubscribed', info);
  }

  get name(): string {
    return String(this.#p.joined.room.name ?? '');
  }

  get localIdentity(): string {
    return this.#p.identity;
  }

  /** The NodeParticipant underneath, for what this class does not cover (video RTP, raw tracks). */
  get participant(): NodeParticipant {
    return this.#p;
  }

  /** Others in the room, by identity. */
  get participants(): ReadonlyMap<string, AgentParticipant> {
    return new Map(this.#participants);
  }

  get remoteTracks(): RemoteTrackInfo[] {
    return [...this.#tracks.values()].map((t) => t.info);
  }

  /**
   * 20 ms frames of 48 kHz mono PCM from a subscribed audio track, decoded by FFmpeg from the RTP
   * the gateway forwards. Ends when the track goes; `break` out of the loop to stop listening.
   */
  audioFrames(track: RemoteTrackInfo | string): AsyncIterableIterator<AudioFrame> {
    const sid = typeof track === 'string' ? track : track.trackSid;
    const entry = this.#tracks.get(sid);
    if (!entry) throw new Error(`track '${sid}' is not subscribed`);
    if (entry.info.kind !== 'audio') throw new Error(`track '${sid}' is ${entry.info.kind}, not audio`);
    entry.decoder ??= new RtpAudioDecoder(entry.remote.track);
    return entry.decoder.frames();
  }

  /**
   * Publishes a microphone track fed with 48 kHz mono s16 PCM chunks of any length; gaps are filled
   * with silence and bursts are paced to real time.
   */
  async publishAudio(source: AsyncIterable<Int16Array>, opts: { name?: string } = {}): Promise<LocalAudioTrack> {
    const local = await this.#p.publishTrack({ kind: 'audio', source: 'microphone', name: opts.name ?? 'agent-audio' });
    const pub = await PcmPublisher.start(local.writeRtp, source, this.#opts.log);
    this.#publishers.add(pub);
    return {
      trackSid: local.trackSid,
      finished: pub.finished,
      stop: async () => {
        this.#publishers.delete(pub);
        await pub.stop();
        await local.unpublish().catch(() => undefined);
      },
    };
  }

  /** Sends a data message to everyone, or to `destinations`. Strings go as UTF-8. */
  async publishData(payload: Uint8Array | string, opts: { topic?: string; reliable?: boolean; destinations?: string[] } = {}): Promise<void> {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    await this.#p.publishData(bytes, opts);
  }

  /** Sets this agent's own participant attributes (others see `participantUpdated`). */
  async setAttributes(attributes: Record<string, string>): Promise<void> {
    await this.#p.updateMetadata({ attributes });
  }

  /** Mutes (or unmutes) someone's published track through the RoomService API (MutePublishedTrack). */
  async muteTrack(identity: string, trackSid: string, muted = true): Promise<void> {
    const token = await mintToken(this.#opts.apiKey, this.#opts.apiSecret, { video: { roomAdmin: true, room: this.name }, ttl: 60 });
    const body = new MuteRoomTrackRequest({ room: this.name, identity, trackSid, muted }).toJsonString();
    const res = await fetch(`${this.#opts.url.replace(/^ws/, 'http').replace(/\/+$/, '')}/twirp/livekit.RoomService/MutePublishedTrack`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body,
    });
    if (!res.ok) {
      const err = (await res.json().catch(() => ({}))) as { msg?: string; code?: string };
      throw new Error(`MutePublishedTrack failed: ${res.status} ${err.code ?? ''} ${err.msg ?? ''}`.trim());
    }
  }

  get disconnected(): boolean {
    return this.#disconnected;
  }

  #release(): void {
    if (this.#disconnected) return;
    this.#disconnected = true;
    for (const t of this.#tracks.values()) t.decoder?.close();
    for (const pub of this.#publishers) pub.stop().catch((err: unknown) => this.#opts.log?.warn({ err }, 'stopping an audio publisher failed'));
    this.#publishers.clear();
  }

  /** Leaves the room and stops every decoder and encoder. */
  async disconnect(): Promise<void> {
    const stopping = [...this.#publishers].map((p) => p.stop());
    this.#release();
    await Promise.all(stopping);
    if (!this.#p.closed) await this.#p.leave();
  }
}
