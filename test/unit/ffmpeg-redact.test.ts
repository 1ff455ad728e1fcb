// The one FFmpeg launcher never logs a stream key: its arguments (debug log) and FFmpeg's own
// error output (stderrTail, the exit log) show the RTMP URL with the key replaced.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { launchFfmpeg } from '../../src/media/ffmpeg.ts';
import { freePort } from '../helpers/net.ts';

it('redacts the stream key of an RTMP URL in the logged arguments and in stderr', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = pino({ level: 'debug' }, sink);
  const port = await freePort(); // nothing listens: FFmpeg fails naming the URL
  const key = 'sk_live_9f8e7d6c5b4a';
  const ff = launchFfmpeg(['-f', 'lavfi', '-i', 'anullsrc', '-t', '0.2', '-c:a', 'aac', '-f', 'flv', `rtmp://127.0.0.1:${port}/live/${key}?token=abc123`], { log, logLevel: 'error' });
  expect(await ff.exited).not.toBe(0);
  const all = lines.join('') + ff.stderrTail();
  expect(lines.join('')).toContain(`rtmp://127.0.0.1:${port}/live/***`);
  expect(all).not.toContain(key);
  expect(all).not.toContain('abc123');
});
