// Layout names → template modules in templates/layouts/. `grid`, `speaker`, `single-speaker` ship
// with roomgate; any `<name>.ts` (or .js/.mjs) dropped there is a layout too. A `-light` or
// `-dark` suffix picks the theme of the base layout (dark by default, like LiveKit's).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { LayoutTemplate, Theme } from './types.ts';

export const LAYOUTS_DIR = fileURLToPath(new URL('../../../templates/layouts/', import.meta.url));
export const DEFAULT_LAYOUT = 'speaker';
const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const EXTENSIONS = ['.ts', '.mjs', '.js'];

export interface ResolvedLayout {
  /** The name as requested (normalised), e.g. grid-light. */
  name: string;
  file: string;
  theme: Theme;
}

function fileFor(base: string, dir: string): string | undefined {
  for (const ext of EXTENSIONS) {
    const f = path.join(dir, `${base}${ext}`);
    if (fs.existsSync(f)) return f;
  }
  return undefined;
}

/** Which module and theme a layout name means; undefined when there is no such layout. */
export function resolveLayout(requested: string, dir = LAYOUTS_DIR): ResolvedLayout | undefined {
  const name = (requested || DEFAULT_LAYOUT).trim().toLowerCase();
  if (!NAME.test(name)) return undefined;
  const exact = fileFor(name, dir);
  if (exact) return { name, file: exact, theme: 'dark' };
  const m = /^(.+)-(light|dark)$/.exec(name);
  if (!m) return undefined;
  const file = fileFor(m[1]!, dir);
  return file ? { name, file, theme: m[2] as Theme } : undefined;
}

/** The names a request may use (for error messages and docs). */
export function availableLayouts(dir = LAYOUTS_DIR): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => EXTENSIONS.includes(path.extname(f)))
    .map((f) => path.basename(f, path.extname(f)))
    .sort();
}

function isTemplate(x: unknown): x is LayoutTemplate {
  return typeof x === 'object' && x !== null && typeof (x as LayoutTemplate).plan === 'function' && typeof (x as LayoutTemplate).maxTiles === 'number';
}

export async function loadLayout(resolved: ResolvedLayout): Promise<LayoutTemplate> {
  const mod = (await import(pathToFileURL(resolved.file).href)) as { default?: unknown };
  if (!isTemplate(mod.default)) throw new Error(`layout module ${resolved.file} must export default { maxTiles, plan(input) }`);
  return mod.default;
}
