// Builds the browser SDK (src/client/browser.ts + mediasoup-client) into one ES module, once per
// process, in memory. The gateway serves it at /sdk/roomgate.js; no build step before `npm start`.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions } from 'esbuild';

const ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'browser.ts');
let bundle: Promise<string> | undefined;

/** One minified ES module for browsers, in memory; every bundle the gateway serves is built so. */
export async function browserBundle(input: Pick<BuildOptions, 'entryPoints' | 'stdin'>): Promise<string> {
  const out = await build({
    ...input,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    legalComments: 'none',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  return out.outputFiles[0]!.text;
}

export function browserSdk(): Promise<string> {
  bundle ??= browserBundle({ entryPoints: [ENTRY] });
  bundle.catch(() => (bundle = undefined)); // a failed build is retried on the next request
  return bundle;
}
