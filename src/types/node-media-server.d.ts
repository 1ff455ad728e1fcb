// node-media-server 4.4.3 ships no types (its @types package describes v2). These describe the parts
// of v4 that src/ingress/rtmp uses: the RTMP listener, the global Context, sessions, broadcasts and
// the logger. Read from the package source; the package is pinned to the exact version.

declare module 'node-media-server/src/core/avpacket.js' {
  /** One FLV-level packet. codec_type 8 audio / 9 video / 18 script; flags below. */
  export default interface AVPacket {
    codec_id: number;
    codec_type: number;
    /** 0 audio sequence header, 1 audio, 2 video sequence header, 3 keyframe, 4 inter frame, 5 metadata. */
    flags: number;
    pts: number;
    dts: number;
    /** Bytes of `data` that belong to this packet (data may be a larger buffer). */
    size: number;
    /** The FLV tag body: for video the frame type/codec byte, AVCPacketType and composition time first. */
    data: Buffer;
  }
}

declare module 'node-media-server/src/session/base_session.js' {
  export default interface BaseSession {
    id: string;
    /** "address:port" of the peer; "" for internal sessions. */
    ip: string;
    protocol: string;
    isPublisher: boolean;
    streamApp: string;
    streamName: string;
    streamPath: string;
    streamQuery: Record<string, unknown>;
    inBytes: number;
    videoCodec: number;
    audioCodec: number;
    /** From onMetaData, when the publisher sent one. */
    videoFramerate?: number;
    socket?: import('node:net').Socket;
    sendBuffer(buffer: Buffer): void;
    close(): void;
  }
}

declare module 'node-media-server/src/server/broadcast_server.js' {
  import type AVPacket from 'node-media-server/src/core/avpacket.js';
  import type BaseSession from 'node-media-server/src/session/base_session.js';
  export default interface BroadcastServer {
    streamPath: string;
    publisher: BaseSession | null;
    subscribers: Map<string, BaseSession>;
    flvMetaData: Buffer | null;
    flvAudioHeader: Buffer | null;
    flvVideoHeader: Buffer | null;
    /** Milliseconds a disconnected publisher may resume in; 30 s by default. */
    publishGraceMs: number;
    broadcastMessage(packet: AVPacket): void;
    donePlay(session: BaseSession): void;
  }
}

declare module 'node-media-server/src/core/context.js' {
  import type { EventEmitter } from 'node:events';
  import type BaseSession from 'node-media-server/src/session/base_session.js';
  import type BroadcastServer from 'node-media-server/src/server/broadcast_server.js';
  interface NmsConfig {
    bind?: string;
    rtmp?: { port?: number };
    [key: string]: unknown;
  }
  const Context: {
    config: NmsConfig;
    sessions: Map<string, BaseSession>;
    broadcasts: Map<string, BroadcastServer>;
    eventEmitter: EventEmitter;
  };
  export default Context;
}

declare module 'node-media-server/src/core/logger.js' {
  type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  const logger: { level: Level; log(message: string, level?: Level): void };
  export default logger;
}

declare module 'node-media-server/src/session/rtmp_session.js' {
  import type { Socket } from 'node:net';
  import type BaseSession from 'node-media-server/src/session/base_session.js';
  /** One RTMP connection: run() attaches the socket listeners, using the `on*` properties as they are then. */
  export default class RtmpSession {
    constructor(socket: Socket);
  }
  export default interface RtmpSession extends BaseSession {
    socket: Socket;
    /** The chunk parser; packetAlloc sizes a message buffer from the peer's declared length. */
    rtmp: {
      parserPacket: { header: { length: number } };
      inPackets: Map<number, { capacity: number }>;
      packetAlloc(): void;
    };
    run(): void;
    onData: (data: Buffer) => void;
  }
}

declare module 'node-media-server/src/protocol/flv.js' {
  import type AVPacket from 'node-media-server/src/core/avpacket.js';
  const Flv: { createHeader(hasAudio: boolean, hasVideo: boolean): Buffer; createMessage(packet: AVPacket): Buffer };
  export default Flv;
}

declare module 'node-media-server/src/protocol/sps_info.js' {
  export function parseH264Sps(sps: Buffer): { width: number; height: number } | null;
}
