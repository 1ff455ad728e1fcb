// A small method + path router for the HTTP edges: routes are tried in the order they were added,
// a pattern is path segments where `:name` takes any one segment, and the first route whose method
// and pattern both match answers. What an edge does with no match (404, 405 with Allow, its own
// error body) stays the edge's: `allowed` says which methods the path has.
export type RouteParams = Readonly<Record<string, string>>;

export type RouteHandler<C> = (params: RouteParams, ctx: C) => unknown;

interface Route<C> {
  methods: ReadonlySet<string>;
  pattern: readonly string[];
  handle: RouteHandler<C>;
}

export interface RouteMatch<C> {
  handle: RouteHandler<C>;
  params: RouteParams;
}

export class Router<C> {
  readonly #routes: Route<C>[] = [];

  /** `pattern`: segments after the edge's prefix, e.g. `room/:room` or `:id/connect` ('' for the prefix itself). */
  add(methods: string | readonly string[], pattern: string, handle: RouteHandler<C>): this {
    this.#routes.push({ methods: new Set(typeof methods === 'string' ? [methods] : methods), pattern: pattern.split('/').filter(Boolean), handle });
    return this;
  }

  /** The first route that takes `method` on these (decoded) segments, with its `:name` values. */
  match(method: string, segments: readonly string[]): RouteMatch<C> | undefined {
    for (const route of this.#routes) {
      if (!route.methods.has(method)) continue;
      const params = bind(route.pattern, segments);
      if (params) return { handle: route.handle, params };
    }
    return undefined;
  }

  /** The methods some route takes on these segments, in the order they were added (for a 405's Allow). */
  allowed(segments: readonly string[]): string[] {
    const out = new Set<string>();
    for (const route of this.#routes) if (bind(route.pattern, segments)) for (const m of route.methods) out.add(m);
    return [...out];
  }
}

function bind(pattern: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segments[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = s;
    else if (p !== s) return undefined;
  }
  return params;
}
