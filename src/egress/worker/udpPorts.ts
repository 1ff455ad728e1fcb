// UDP port pairs for FFmpeg's RTP input: an even RTP port with the next one free for RTCP
// (FFmpeg's RTP demuxer listens on both). The OS picks; the sockets close just before FFmpeg binds.
import dgram from 'node:dgram';

function bind(port: number, host: string): Promise<dgram.Socket | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    s.once('error', () => {
      s.close();
      resolve(undefined);
    });
    s.bind(port, host, () => resolve(s));
  });
}

export async function udpPortPair(host: string): Promise<{ port: number; rtcpPort: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const a = await bind(0, host);
    if (!a) continue;
    const port = a.address().port;
    if (port % 2 !== 0 || port >= 65535) {
      a.close();
      continue;
    }
    const b = await bind(port + 1, host);
    a.close();
    if (!b) continue;
    b.close();
    return { port, rtcpPort: port + 1 };
  }
  throw new Error(`no free UDP port pair on ${host}`);
}
