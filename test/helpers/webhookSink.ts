// A local HTTP endpoint that records webhook POSTs (raw body and Authorization header).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  body: string;
  auth: string | undefined;
  contentType: string | undefined;
}

export interface WebhookSink {
  url: string;
  received: Received[];
  /** Status to answer for the n-th request (0-based); 200 when it returns undefined. */
  statusFor: (n: number, body: string) => number | undefined;
  close(): Promise<void>;
}

export async function startWebhookSink(): Promise<WebhookSink> {
  let count = 0;
  const sink: WebhookSink = {
    url: '',
    received: [],
    statusFor: () => undefined,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const status = sink.statusFor(count++, body) ?? 200;
      if (status === 200) sink.received.push({ body, auth: req.headers.authorization, contentType: req.headers['content-type'] });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sink.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return sink;
}
