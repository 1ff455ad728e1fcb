// A mediasoup PlainTransport consumer that sends one producer's RTP to a local receiver (FFmpeg
// reading an SDP): the media path of recordings and egress. The consumer starts paused; the
// caller connects it once the receiver listens, then resumes it and asks for a keyframe.
import type { types } from 'mediasoup';
import type { RtpInputStream } from './sdp.ts';

export interface RtpSend {
  readonly transport: types.PlainTransport;
  readonly consumer: types.Consumer;
  /** The codec as the receiver's SDP must describe it (port fields filled in by connect's caller). */
  readonly codec: Omit<RtpInputStream, 'port' | 'rtcpPort'>;
  /** Points the RTP (and RTCP) at the receiver, resumes and requests a keyframe. */
  start(target: { ip: string; port: number; rtcpPort: number }): Promise<void>;
  close(): void;
}

/** Receivers such as FFmpeg do no retransmission: RTX would only cost bandwidth. */
function withoutRtx(caps: types.RtpCapabilities): types.RtpCapabilities {
  return {
    codecs: (caps.codecs ?? []).filter((c) => !/\/rtx$/i.test(c.mimeType)),
    headerExtensions: [],
  };
}

export async function openRtpSend(router: types.Router, producer: types.Producer, listenIp = '127.0.0.1'): Promise<RtpSend> {
  // FFmpeg's RTP demuxer wants RTCP on its own port, so no rtcp-mux; comedia off: we send.
  const transport = await router.createPlainTransport({ listenIp: { ip: listenIp }, rtcpMux: false, comedia: false });
  let consumer: types.Consumer;
  try {
    consumer = await transport.consume({ producerId: producer.id, rtpCapabilities: withoutRtx(router.rtpCapabilities), paused: true });
  } catch (err) {
    transport.close();
    throw err;
  }
  if (consumer.type === 'simulcast') await consumer.setPreferredLayers({ spatialLayer: 10, temporalLayer: 10 }).catch(() => undefined);
  const c = consumer.rtpParameters.codecs[0]!;
  return {
    transport,
    consumer,
    codec: {
      kind: consumer.kind,
      payloadType: c.payloadType,
      mimeType: c.mimeType,
      clockRate: c.clockRate,
      ...(c.channels ? { channels: c.channels } : {}),
      parameters: { ...(c.parameters ?? {}) },
    },
    async start(target) {
      await transport.connect({ ip: target.ip, port: target.port, rtcpPort: target.rtcpPort });
      await consumer.resume();
      if (consumer.kind === 'video') await consumer.requestKeyFrame();
    },
    close() {
      transport.close();
    },
  };
}
