// What of a staging folder has reached storage: one line per stored local file ("<name>\t<bytes>"),
// appended (synchronously) as each upload completes and before the local copy is removed. A
// worker that takes over a killed one's folder reads it to know which files are already stored.
import fs from 'node:fs';
import path from 'node:path';

export class Ledger {
  readonly #file: string;

  constructor(dir: string) {
    this.#file = path.join(dir, 'stored.tsv');
  }

  add(name: string, size: number): void {
    fs.appendFileSync(this.#file, `${name}\t${size}\n`);
  }

  /** Stored names and their sizes (a half-written last line from a kill is ignored). */
  read(): Map<string, number> {
    const out = new Map<string, number>();
    let text = '';
    try {
      text = fs.readFileSync(this.#file, 'utf8');
    } catch {
      return out;
    }
    // Only complete lines: the last element is '' or a line a kill cut short.
    for (const line of text.split('\n').slice(0, -1)) {
      const [name, size] = line.split('\t');
      if (name && size && /^\d+$/.test(size)) out.set(name, Number(size));
    }
    return out;
  }
}
