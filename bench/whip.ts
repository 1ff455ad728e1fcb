// WHIP ingest figures: latency from the WHIP client handing an RTP packet to its WebRTC stack to a
// room subscriber receiving it, and the mediasoup worker's CPU per WHIP ingest (forwarding only).
//
// Latency method (not glass-to-glass): FFmpeg encodes testsrc2 VP8 + Opus to RTP; the werift WHIP
// client stamps each packet as it sends it; a NodeParticipant subscriber (werift too, same process,
// same clock) stamps it on arrival. Packets are matched by their payload bytes, which the SFU does
// not change. So it measures werift send (SRTP) → loopback → mediasoup (SRTP decrypt, route,
// encrypt) → loopback → werift receive (SRTP, jitter-free RTP callback): the network and SFU part
// of glass-to-glass, without capture, encode, jitter buffer, decode and display.
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { IngressClient, IngressInput } from 'livekit-server-sdk';
import { waitFor } from '../test/helpers/net.ts';
import { whipPublish } from '../test/helpers/whip.ts';
import { cpuSeconds } from './fanout.ts';
import { FLASH_INPUT, flashLatency } from './ingest.ts';
import { BENCH_KEY, BENCH_SECRET, startBenchGateway, type Recorder } from './gateway.ts';


const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const key = (payload: Buffer) => createHash('sha1').update(payload).digest('base64');

export async function runWhip(record: Recorder, windowS = 10): Promise<void> {
  const API_KEY = BENCH_KEY;
  const API_SECRET = BENCH_SECRET;
  const bench = await startBenchGateway();
  const { gw } = bench;
  const workerPid = gw.mediaWorkerPids[0]!;
  try {
    const info = await new IngressClient(gw.url, API_KEY, API_SECRET).createIngress(IngressInput.WHIP_INPUT, {
      name: 'bench',
      roomName: 'bench-whip',
      participantIdentity: 'whip',
    });
    // Worker CPU with nothing flowing, for the baseline.
    let c0 = cpuSeconds(workerPid);
    let t0 = performance.now();
    await new Promise((r) => setTimeout(r, 3000));
    const idle = (cpuSeconds(workerPid) - c0) / ((performance.now() - t0) / 1000);

    const sent = new Map<string, { kind: string; t: number; marker: boolean }>();
    const lat = { audio: [] as number[], video: [] as number[], frames: [] as number[] };
    let measuring = false;
    const pub = await whipPublish(info.url, info.streamKey, {
      video: 'VP8',
      videoInput: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30'],
      onSend: (kind, packet) => {
        if (!measuring) return;
        const cc = packet[0]! & 0x0f;
        sent.set(key(packet.subarray(12 + cc * 4)), { kind, t: performance.now(), marker: (packet[1]! & 0x80) !== 0 });
      },
    });
    if (pub.status !== 201) throw new Error(`WHIP publish failed: ${pub.status} ${pub.answer}`);
    const sub = await joinBench(gw.url, API_KEY, API_SECRET);
    const onTrack = (t: { kind: string; track: { onReceiveRtp: { subscribe(f: (rtp: { payload: Buffer }) => void): unknown } } }) =>
      t.track.onReceiveRtp.subscribe((rtp) => {
        const s = sent.get(key(rtp.payload));
        if (!s) return;
        const ms = performance.now() - s.t;
        (s.kind === 'audio' ? lat.audio : lat.video).push(ms);
        if (s.kind === 'video' && s.marker) lat.frames.push(ms);
      });
    sub.remoteTracks.forEach(onTrack);
    sub.on('trackSubscribed', onTrack);
    await waitFor(() => (sub.remoteTracks.length === 2 ? true : undefined), 20_000, 'subscriber tracks');
    await new Promise((r) => setTimeout(r, 2000)); // past the first keyframe and bandwidth ramp
    measuring = true;
    c0 = cpuSeconds(workerPid);
    t0 = performance.now();
    await new Promise((r) => setTimeout(r, windowS * 1000));
    const busy = (cpuSeconds(workerPid) - c0) / ((performance.now() - t0) / 1000);
    measuring = false;

    for (const [name, values] of [['audio packets', lat.audio], ['video packets', lat.video], ['video frames (last packet)', lat.frames]] as const) {
      const sorted = [...values].sort((a, b) => a - b);
      record(`WHIP→subscriber RTP latency, ${name}, p50`, pct(sorted, 50), 'ms', `${sorted.length} samples`);
      record(`WHIP→subscriber RTP latency, ${name}, p95`, pct(sorted, 95), 'ms');
    }
    record('mediasoup worker CPU, idle', idle * 100, '% of a core');
    record('mediasoup worker CPU, 1 WHIP ingest (VP8 640x360 ~600 kb/s + Opus) + 1 subscriber', busy * 100, '% of a core');
    record('  of which the WHIP ingest and its forwarding (minus idle)', (busy - idle) * 100, '% of a core');
    await pub.stop();
    await sub.leave();

    // Glass-to-glass by the flash method, the same measurement as the RTMP ingest's.
    const flashIngress = await new IngressClient(gw.url, API_KEY, API_SECRET).createIngress(IngressInput.WHIP_INPUT, {
      roomName: 'bench-whip-flash',
      participantIdentity: 'flash',
    });
    const flashPub = await whipPublish(flashIngress.url, flashIngress.streamKey, { video: 'H264', audio: false, videoInput: FLASH_INPUT, videoStdin: true });
    if (flashPub.status !== 201) throw new Error(`WHIP publish failed: ${flashPub.status} ${flashPub.answer}`);
    try {
      const g2g = await flashLatency(gw, 'bench-whip-flash', 'flash', (f) => flashPub.videoFeed!.write(f));
      const note = `${g2g.samples} flashes, 640x360 x264 zerolatency in a werift WHIP client, decoded subscriber`;
      record('WHIP glass-to-glass (flash), p50', g2g.p50, 'ms', note);
      record('WHIP glass-to-glass (flash), p95', g2g.p95, 'ms', `min ${g2g.min.toFixed(0)}, max ${g2g.max.toFixed(0)}`);
    } finally {
      await flashPub.stop();
    }
  } finally {
    await bench.close();
  }
}

async function joinBench(url: string, apiKey: string, secret: string) {
  const { AccessToken } = await import('livekit-server-sdk');
  const { NodeParticipant } = await import('../src/client/node.ts');
  const at = new AccessToken(apiKey, secret, { identity: 'bench-sub' });
  at.addGrant({ roomJoin: true, room: 'bench-whip', canPublish: false });
  return NodeParticipant.connect(url, await at.toJwt());
}
