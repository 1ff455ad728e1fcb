// The demo page for stock LiveKit clients (/lk) and the livekit-client bundle it loads
// (/sdk/livekit-client.js), built once per process in memory from the npm package. livekit-client
// is a development dependency: without it the page still loads and the bundle answers 404.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { browserBundle } from '../client/bundle.ts';

export const LIVEKIT_DEMO_PATH = '/lk';
export const LIVEKIT_SDK_PATH = '/sdk/livekit-client.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PAGE = fileURLToPath(new URL('../../templates/livekit/index.html', import.meta.url));
let bundle: Promise<string> | undefined;

function livekitClient(): Promise<string> {
  // Re-exported through esbuild's resolver, which picks the package's ES module build.
  bundle ??= browserBundle({ stdin: { contents: "export * from 'livekit-client';", resolveDir: ROOT, loader: 'js' } });
  bundle.catch(() => (bundle = undefined)); // retried on the next request
  return bundle;
}

export async function serveLiveKitDemo(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const send = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...extra });
    res.end(body);
  };
  if (req.method !== 'GET') return send(405, 'text/plain; charset=utf-8', 'GET only', { Allow: 'GET' });
  if (url.pathname === LIVEKIT_DEMO_PATH) return send(200, 'text/html; charset=utf-8', await readFile(PAGE));
  if (url.pathname === LIVEKIT_SDK_PATH) {
    let js: string;
    try {
      js = await livekitClient();
    } catch (err) {
      return send(404, 'text/plain; charset=utf-8', `livekit-client is not installed (a development dependency): ${(err as Error).message.split('\n')[0]}`);
    }
    return send(200, 'text/javascript; charset=utf-8', js, { 'Cache-Control': 'no-cache' });
  }
  send(404, 'text/plain; charset=utf-8', `no route for ${url.pathname}`);
}
