// Stream URLs: what a destination may be, and how it is shown. A stream key is a credential: it
// stays in the job data only, and every EgressInfo (API answers, webhooks, Redis records) shows
// the URL with the key replaced by a short fingerprint, so two destinations stay distinguishable.
import { createHash } from 'node:crypto';

export class StreamUrlError extends Error {
  override name = 'StreamUrlError';
}

/** rtmp(s)://host[:port]/app[/…]/key, as LiveKit accepts (`mux://` and `twitch://` shorthands expanded). */
export function normaliseStreamUrl(raw: string): string {
  // The URL parser drops tabs and line breaks silently ("rt\tmp://" parses as rtmp://): a URL
  // holding any control character is refused rather than guessed at.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[\u0000-\u001f\u007f-\u009f]/.test(raw)) throw new StreamUrlError('stream url must not contain control characters (tab, line break, …)');
  let text = raw.trim();
  if (text.startsWith('mux://')) text = `rtmps://global-live.mux.com:443/app/${text.slice('mux://'.length)}`;
  if (text.startsWith('twitch://')) text = `rtmp://live.twitch.tv/app/${text.slice('twitch://'.length)}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StreamUrlError(`stream url '${redactStreamUrl(text).slice(0, 200)}' is not a valid URL`);
  }
  if (url.protocol !== 'rtmp:' && url.protocol !== 'rtmps:') {
    throw new StreamUrlError(`stream url scheme '${url.protocol}' is not supported; use rtmp:// or rtmps:// (or mux://, twitch://)`);
  }
  if (!url.hostname) throw new StreamUrlError('stream url has no host');
  const parts = url.pathname.split('/').filter(Boolean);
  if (parts.length < 2) {
    throw new StreamUrlError(`stream url '${redactStreamUrl(text)}' must name an app and a stream key: rtmp://host/app/stream_key`);
  }
  // What was checked is what FFmpeg gets: the parser's serialisation, not the caller's string.
  return url.href;
}

/** The URL with its stream key (last path segment), password and query replaced. */
export function redactStreamUrl(raw: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(\/[^?#]*)?(\?[^#]*)?/i.exec(raw);
  if (!m) return '{redacted}';
  const [, scheme, authority = '', pathname = '', query] = m;
  const host = authority.includes('@') ? `{redacted}@${authority.slice(authority.lastIndexOf('@') + 1)}` : authority;
  const segments = pathname.split('/');
  const last = segments.length - 1;
  if (last >= 2 && segments[last]) segments[last] = `{${fingerprint(segments[last] + (query ?? ''))}}`;
  return `${scheme}${host}${segments.join('/')}`;
}

function fingerprint(secret: string): string {
  return `key-${createHash('sha256').update(secret).digest('hex').slice(0, 6)}`;
}

/** True when `candidate` names `real` (given as the real URL or as its redacted form). */
export function sameStreamUrl(real: string, candidate: string): boolean {
  if (real === candidate || redactStreamUrl(real) === candidate) return true;
  try {
    return normaliseStreamUrl(candidate) === real;
  } catch {
    return false;
  }
}
