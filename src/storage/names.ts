// Free names for what storage writes: an output never overwrites someone else's file or object.
// Storage owns this (the local folder and S3 both pick a name); egress only names the first choice.

/** `a/b.mp4` → `a/b-2.mp4`: the name an output takes when `a/b.mp4` is someone else's already. */
export function withNumberSuffix(p: string, n: number): string {
  if (n === 0) return p;
  const slash = p.lastIndexOf('/');
  const dot = p.lastIndexOf('.');
  return dot > slash + 1 ? `${p.slice(0, dot)}-${n}${p.slice(dot)}` : `${p}-${n}`;
}

/** How many numbered names an output tries before giving up. */
export const MAX_NAME_SUFFIX = 999;
