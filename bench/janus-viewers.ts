// The Janus side's receivers, run as a child of bench/janus.ts: N WebRTC viewers on ONE UDP socket,
// like the roomgate side's one counting socket. Each viewer is ICE-lite (answers Janus's
// connectivity checks; Janus, the offerer, is the controlling full agent) and a DTLS client
// (werift's), so Janus runs its whole WebRTC path per viewer (ICE, DTLS, SRTP encrypt). SRTP is not
// decrypted here, as on the roomgate side: a packet is counted from its clear RTP header, and the
// sequence numbers (rewritten per viewer by Janus, contiguous) give the end-to-end loss.
// IPC in: {type:'viewer', id, ufrag, pwd} | 'reset' | 'counts'. IPC out: {port, fingerprint} once,
// {connected: id} per viewer, {counts} per 'counts'.
import { createHmac } from 'node:crypto';
import { X509Certificate } from 'node:crypto';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { CipherContext, DtlsClient, HashAlgorithm, NamedCurveAlgorithm, SignatureAlgorithm } from 'werift';

export interface ViewerCounts {
  /** Viewers whose DTLS handshake finished. */
  connected: number;
  /** Viewers that got at least one RTP packet since the last reset. */
  receiving: number;
  /** RTP packets received since the last reset, all viewers. */
  received: number;
  /** Packets the sequence numbers say were sent in that span (first to last seen, per viewer). */
  expected: number;
  /** Viewers with at least one missing sequence number in that span. */
  lossyViewers: number;
}

export type ViewerCommand = { type: 'viewer'; id: number; ufrag: string; pwd: string } | 'reset' | 'counts';

interface Viewer {
  id: number;
  ufrag: string;
  pwd: string;
  port?: number;
  dtls?: DtlsClient;
  deliver?: (buf: Buffer) => void;
  connected: boolean;
  received: number;
  firstSeq: number; // extended sequence numbers; -1 before the first packet since reset
  lastSeq: number;
}

const MAGIC = 0x2112a442;
/** The viewers' address (argv[2]): in the loopback range, 127.0.0.1 unless told. */
const LISTEN_IP = process.argv[2] ?? '127.0.0.1';

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(buf: Buffer): number {
  let c = -1;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function attr(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(value.length, 2);
  const pad = Buffer.alloc((4 - (value.length % 4)) % 4);
  return Buffer.concat([head, value, pad]);
}

/** A Binding success response (RFC 5389) with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT. */
function bindingSuccess(request: Buffer, from: { address: string; port: number }, pwd: string): Buffer {
  const xor = Buffer.alloc(8);
  xor.writeUInt8(0, 0);
  xor.writeUInt8(1, 1); // IPv4
  xor.writeUInt16BE(from.port ^ (MAGIC >>> 16), 2);
  const ip = from.address.split('.').reduce((a, o) => (a << 8) | Number(o), 0) >>> 0;
  xor.writeUInt32BE((ip ^ MAGIC) >>> 0, 4);
  const header = Buffer.alloc(20);
  header.writeUInt16BE(0x0101, 0);
  request.copy(header, 4, 4, 20); // magic cookie + transaction id
  let body = attr(0x0020, xor);
  // MESSAGE-INTEGRITY covers the header with a length that already counts the integrity attribute.
  header.writeUInt16BE(body.length + 24, 2);
  const mac = createHmac('sha1', pwd).update(Buffer.concat([header, body])).digest();
  body = Buffer.concat([body, attr(0x0008, mac)]);
  header.writeUInt16BE(body.length + 8, 2);
  const fp = Buffer.alloc(4);
  fp.writeUInt32BE((crc32(Buffer.concat([header, body])) ^ 0x5354554e) >>> 0, 0);
  return Buffer.concat([header, body, attr(0x8028, fp)]);
}

function stunAttrs(msg: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let at = 20;
  const end = Math.min(msg.length, 20 + msg.readUInt16BE(2));
  while (at + 4 <= end) {
    const type = msg.readUInt16BE(at);
    const len = msg.readUInt16BE(at + 2);
    out.set(type, msg.subarray(at + 4, at + 4 + len));
    at += 4 + len + ((4 - (len % 4)) % 4);
  }
  return out;
}

async function main() {
  const { certPem, keyPem, signatureHash } = await CipherContext.createSelfSignedCertificateWithKey(
    { signature: SignatureAlgorithm.ecdsa_3, hash: HashAlgorithm.sha256_4 },
    NamedCurveAlgorithm.secp256r1_23,
  );
  const fingerprint = new X509Certificate(certPem).fingerprint256;
  const byUfrag = new Map<string, Viewer>();
  const byPort = new Map<number, Viewer>();
  const viewers: Viewer[] = [];
  const send = (msg: unknown) => process.send!(msg);
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 * 1024 * 1024 });

  const startDtls = (v: Viewer, host: string, port: number) => {
    const address: AddressInfo = { address: host, port, family: 'IPv4' };
    const transport = {
      type: 'udp',
      address,
      closed: false,
      onData: (_data: Buffer, _addr: unknown) => {},
      send: (data: Buffer) =>
        new Promise<void>((resolve) => {
          sock.send(data, port, host, () => resolve());
        }),
      close: async () => {},
    };
    v.deliver = (buf) => transport.onData(buf, [host, port]);
    const dtls = new DtlsClient({
      transport,
      cert: certPem,
      key: keyPem,
      signatureHash,
      srtpProfiles: [1], // SRTP_AES128_CM_HMAC_SHA1_80
      extendedMasterSecret: true,
    });
    v.dtls = dtls;
    dtls.onConnect.once(() => {
      v.connected = true;
      send({ connected: v.id });
    });
    dtls.onError.subscribe((err: Error) => console.error(`janus viewer ${v.id}: DTLS ${err.message}`));
    dtls.connect().catch((err: unknown) => console.error(`janus viewer ${v.id}: DTLS connect`, err));
  };

  sock.on('message', (m, rinfo) => {
    const first = m[0]!;
    if (first >= 128 && first <= 191) {
      // RTCP (RFC 5761: second byte 192-223) is not media; RTP is counted by the viewer it came to.
      const second = m[1]!;
      if (second >= 192 && second <= 223) return;
      const v = byPort.get(rinfo.port);
      if (!v || m.length < 12) return;
      const seq = m.readUInt16BE(2);
      v.received++;
      if (v.firstSeq < 0) {
        v.firstSeq = seq;
        v.lastSeq = seq;
        return;
      }
      // Extend over the 16-bit wrap from the last packet; reordering within half the space is fine.
      const last = v.lastSeq;
      let ext = (last & ~0xffff) | seq;
      if (ext < last - 0x8000) ext += 0x10000;
      else if (ext > last + 0x8000) ext -= 0x10000;
      if (ext > last) v.lastSeq = ext;
      if (ext < v.firstSeq) v.firstSeq = ext;
      return;
    }
    if (first >= 20 && first <= 63) {
      byPort.get(rinfo.port)?.deliver?.(m);
      return;
    }
    if (first <= 3 && m.length >= 20 && m.readUInt16BE(0) === 0x0001) {
      const username = stunAttrs(m).get(0x0006)?.toString();
      const v = username ? byUfrag.get(username.split(':')[0]!) : undefined;
      if (!v) return;
      sock.send(bindingSuccess(m, rinfo, v.pwd), rinfo.port, rinfo.address);
      if (v.port === undefined) {
        // The first check that reaches us picks Janus's address for this viewer (one host
        // candidate each side on loopback: there is only one pair to nominate).
        v.port = rinfo.port;
        byPort.set(rinfo.port, v);
        startDtls(v, rinfo.address, rinfo.port);
      }
    }
  });

  process.on('message', (cmd: ViewerCommand) => {
    if (cmd === 'reset') {
      for (const v of viewers) {
        v.received = 0;
        v.firstSeq = -1;
        v.lastSeq = -1;
      }
    } else if (cmd === 'counts') {
      const counts: ViewerCounts = { connected: 0, receiving: 0, received: 0, expected: 0, lossyViewers: 0 };
      for (const v of viewers) {
        if (v.connected) counts.connected++;
        if (v.received === 0) continue;
        counts.receiving++;
        counts.received += v.received;
        const expected = v.lastSeq - v.firstSeq + 1;
        counts.expected += expected;
        if (v.received < expected) counts.lossyViewers++;
      }
      send({ counts });
    } else {
      const v: Viewer = { id: cmd.id, ufrag: cmd.ufrag, pwd: cmd.pwd, connected: false, received: 0, firstSeq: -1, lastSeq: -1 };
      viewers.push(v);
      byUfrag.set(v.ufrag, v);
    }
  });
  process.on('disconnect', () => process.exit(0));
  sock.bind(0, LISTEN_IP, () => send({ port: sock.address().port, fingerprint }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
