// The worker's RTP input (issue 19, finding 5): only the sender the gateway announced for a track
// can feed a recording. Packets from any other address or port on the worker's RTP host are
// dropped before FFmpeg sees them; the announced sender's reach FFmpeg's loopback port.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { TapInput } from '../../src/egress/worker/tapInput.ts';
import { moduleLogger } from '../../src/logger.ts';
import { sleep } from '../../src/time.ts';
import { waitFor } from '../helpers/net.ts';

const sockets: dgram.Socket[] = [];
let input: TapInput | undefined;

afterEach(() => {
  input?.close();
  input = undefined;
  for (const s of sockets.splice(0)) s.close();
});

async function udp(port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((resolve) => s.bind(port, '127.0.0.1', resolve));
  return s;
}

function opusPacket(seq: number, marker: string): Buffer {
  const h = Buffer.alloc(12);
  h[0] = 0x80;
  h[1] = 111;
  h.writeUInt16BE(seq, 2);
  h.writeUInt32BE(seq * 960, 4);
  h.writeUInt32BE(0x1234, 8);
  return Buffer.concat([h, Buffer.from(marker)]);
}

/** A tap input for one Opus track that the gateway sends from `from`. */
function openOpusInput(from: { ip: string; port: number; rtcpPort: number }): Promise<TapInput> {
  return TapInput.open({
    host: '127.0.0.1',
    tracks: [{ trackSid: 'TR_a', identity: 'p', kind: 'audio', codec: { kind: 'audio', payloadType: 111, mimeType: 'audio/opus', clockRate: 48000, channels: 2 }, from, cached: false }],
    holdAudioMs: 0,
    gateTimeoutMs: 1000,
    log: moduleLogger('tap-input-test'),
  });
}

describe('tap input', () => {
  it('passes RTP from the announced sender only', async () => {
    const gateway = await udp();
    const intruder = await udp();
    const from = { ip: '127.0.0.1', port: gateway.address().port, rtcpPort: gateway.address().port };
    input = await openOpusInput(from);
    // Stands where FFmpeg would listen (its SDP's port on loopback).
    const ffmpeg = await udp(input.streams[0]!.port);
    const got: string[] = [];
    ffmpeg.on('message', (m) => {
      if ((m[1]! & 0x7f) === 111) got.push(m.subarray(12).toString());
    });
    const [target] = input.targets;
    const send = (s: dgram.Socket, seq: number, marker: string) => s.send(opusPacket(seq, marker), target!.port, target!.ip);
    // The intruder first, then the gateway, so a forwarded intruder packet would arrive before the
    // gateway's last one that the test waits for.
    for (let i = 0; i < 20; i++) send(intruder, 1000 + i, 'intruder');
    for (let i = 0; i < 20; i++) send(gateway, i, `gateway-${i}`);
    await waitFor(() => (got.includes('gateway-19') ? true : undefined), 10_000, "the gateway's last packet at FFmpeg's port");
    expect(got.filter((g) => g.startsWith('gateway')).length).toBeGreaterThan(0);
    expect(got.filter((g) => g === 'intruder')).toEqual([]);
  });

  // What a start waits on before the gateway sends (EgressRun's sources, CompositeRun): FFmpeg's
  // port bound, seen in /proc/net/udp on Linux.
  it.runIf(process.platform === 'linux')('is listening once a socket is bound to its FFmpeg port, not before', async () => {
    const gateway = await udp();
    const from = { ip: '127.0.0.1', port: gateway.address().port, rtcpPort: gateway.address().port };
    input = await openOpusInput(from);
    let listening = false;
    const ready = input.listening.then(() => (listening = true));
    await sleep(200); // long enough for the poll (every 10 ms) to have seen a bound port
    expect(listening).toBe(false);
    await udp(input.streams[0]!.port);
    await ready;
    expect(listening).toBe(true);
  });
});
