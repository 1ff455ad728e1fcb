// Moving a finished file into the backup folder, which an operator may put on another file system
// (a larger or network disk): rename(2) cannot cross file systems (EXDEV), so the file is copied
// beside its destination, renamed into place there (a reader never sees half a file) and the
// original removed.
import fs from 'node:fs';

export function moveFileSync(from: string, to: string): void {
  try {
    fs.renameSync(from, to);
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
  }
  const tmp = `${to}.${process.pid}.tmp`;
  try {
    fs.copyFileSync(from, tmp);
    fs.renameSync(tmp, to);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.rmSync(from, { force: true });
}
