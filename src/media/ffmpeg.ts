// The one FFmpeg launcher. Every FFmpeg the project runs goes through here, so each one is
// logged, stoppable the same way ('q' on stdin, then SIGKILL) and counted: tests assert no orphans.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { Logger } from '../logger.ts';

export interface FfmpegProcess {
  readonly pid: number;
  /** Resolves when FFmpeg exits, with its code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** The last lines FFmpeg wrote to stderr (for error messages). */
  stderrTail(): string;
  /**
   * Media for an FFmpeg reading `-i pipe:0` (launched with stdin: 'media'). Returns false when
   * the pipe is full; the caller decides whether to drop.
   */
  write(chunk: Buffer): boolean;
  /** Bytes written to stdin that FFmpeg has not read yet. */
  readonly pending: number;
  /** FFmpeg's stdout when launched with stdout: 'pipe' (media written to `pipe:1`). */
  readonly stdout: Readable | undefined;
  /** Asks FFmpeg to finish ('q', or end of input for stdin media), then kills it after graceMs. */
  stop(graceMs?: number): Promise<void>;
  /**
   * Queues a filter command through FFmpeg's interactive stdin (key 'C'): every filter named
   * `target` runs `command arg` at its first frame stamped `atS` (seconds on the graph's clock) or
   * later. FFmpeg reads one key per 100 ms, so commands that must land on one frame need an `atS`
   * that far ahead per command. Only for stdin 'control'; false when it could not be written.
   */
  command(target: string, command: string, arg: string, atS: number): boolean;
}

const running = new Set<number>();

/** PIDs of FFmpeg processes started by this process that are still running. */
export function runningFfmpegPids(): number[] {
  return [...running];
}

export interface LaunchOptions {
  log?: Logger;
  /** Default 'error': FFmpeg's banner and progress would only fill logs. */
  logLevel?: 'quiet' | 'error' | 'warning' | 'info';
  bin?: string;
  /** 'control' (default): stdin only carries 'q'. 'media': stdin is FFmpeg's input (pipe:0). */
  stdin?: 'control' | 'media';
  /** 'ignore' (default) or 'pipe': FFmpeg writes media to `pipe:1` for the caller to read. */
  stdout?: 'ignore' | 'pipe';
  /** Strings (source URLs with credentials, stream keys) replaced by *** in logs and stderrTail; URL credentials are found by the launcher too. */
  secrets?: string[];
}

/**
 * The credentials inside URL arguments: passwords (user:pass@) of any URL, and the stream key (last
 * path segment) and query of an RTMP/SRT URL. Every launch redacts them, whether or not its caller
 * remembered to list them.
 */
function urlSecrets(args: string[]): string[] {
  const found: string[] = [];
  for (const arg of args) {
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(arg)) continue;
    let url: URL;
    try {
      url = new URL(arg);
    } catch {
      continue;
    }
    if (url.password) found.push(url.password, decodeURIComponent(url.password));
    if (/^(rtmps?|rtmpt|srt):$/.test(url.protocol)) {
      const segments = url.pathname.split('/').filter(Boolean);
      if (segments.length >= 2) found.push(segments.at(-1)!);
      if (url.search.length > 1) found.push(url.search.slice(1));
    }
  }
  return found;
}

export function launchFfmpeg(args: string[], opts: LaunchOptions = {}): FfmpegProcess {
  const fullArgs = ['-hide_banner', '-loglevel', opts.logLevel ?? 'error', ...args];
  // Longest first: a secret inside another is not left half-shown.
  const secrets = [...new Set([...(opts.secrets ?? []), ...urlSecrets(args)])].filter((x) => x.length > 0).sort((a, b) => b.length - a.length);
  const redact = (text: string) => secrets.reduce((t, x) => t.split(x).join('***'), text);
  const child: ChildProcess = spawn(opts.bin ?? 'ffmpeg', fullArgs, { stdio: ['pipe', opts.stdout ?? 'ignore', 'pipe'] });
  if (child.pid === undefined) {
    child.once('error', () => undefined); // ENOENT arrives as an event; the throw below says it
    throw new Error('ffmpeg could not be started (is it installed? apt-get install -y ffmpeg)');
  }
  const pid = child.pid;
  running.add(pid);
  let tail = '';
  child.stderr!.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  });
  child.stdin!.on('error', () => undefined); // FFmpeg may exit before reading its stdin
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running.delete(pid);
      if (code !== 0 && code !== null) opts.log?.debug({ pid, code, stderr: redact(tail.trim()) }, 'ffmpeg exited');
      resolve(code);
    });
    child.once('error', (err) => {
      running.delete(pid);
      tail += String(err);
      resolve(null);
    });
  });
  opts.log?.debug({ pid, args: redact(fullArgs.join(' ')) }, 'ffmpeg started');
  return {
    pid,
    exited,
    stderrTail: () => redact(tail.trim()),
    stdout: child.stdout ?? undefined,
    write(chunk) {
      if (opts.stdin !== 'media' || !child.stdin!.writable) return false;
      return child.stdin!.write(chunk);
    },
    get pending() {
      return child.stdin!.writableLength;
    },
    command(target, command, arg, atS) {
      if (opts.stdin === 'media' || !child.stdin!.writable || /[\s]/.test(target + command) || /[\r\n]/.test(arg)) return false;
      return child.stdin!.write(`C${target} ${atS.toFixed(6)} ${command} ${arg}\n`);
    },
    async stop(graceMs = 2000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (opts.stdin === 'media') child.stdin!.end();
      else child.stdin!.end('q');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
