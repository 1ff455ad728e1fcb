// Where the objects of an output that grows while it records (HLS segments and playlists, image
// snapshots) are put, one at a time: an S3 bucket, or the local output folder when there is no S3.
// A put never removes its source: the caller notes the object as stored first, so a kill between
// the two leaves the local copy to be stored again rather than an object nobody knows about.
import fs from 'node:fs';
import path from 'node:path';
import type { S3Settings } from './settings.ts';
import { s3Location, uploadBody, uploadFile } from './s3.ts';

export type UploadBody = { file: string } | { data: Buffer };

export interface UploadTarget {
  /** Stores `body` at `key` (replacing what is there) and says where it is now. */
  put(key: string, body: UploadBody, contentType: string): Promise<string>;
  /** Where `key` is (or will be) stored. */
  location(key: string): string;
}

/** Playlists change while the recording runs: caches and CDNs must not keep an old one. */
const cacheControlOf = (contentType: string) => (contentType === 'application/vnd.apple.mpegurl' ? 'no-cache' : undefined);

export function s3Target(s3: S3Settings): UploadTarget {
  return {
    put: (key, body, contentType) => ('file' in body ? uploadFile(s3, key, body.file, contentType) : uploadBody(s3, key, body.data, contentType, cacheControlOf(contentType))),
    location: (key) => s3Location(s3, key),
  };
}

/** The output folder: a reader never sees half an object (written beside it, then renamed over it). */
export function folderTarget(root: string): UploadTarget {
  const location = (key: string) => path.resolve(root, key);
  return {
    location,
    async put(key, body) {
      const dest = location(key);
      const tmp = `${dest}.${process.pid}.tmp`;
      await fs.promises.mkdir(path.dirname(dest), { recursive: true });
      await fs.promises.rm(tmp, { force: true });
      if ('data' in body) {
        await fs.promises.writeFile(tmp, body.data);
      } else {
        // A hard link costs nothing when staging and output share a file system; a copy otherwise.
        await fs.promises.link(body.file, tmp).catch(() => fs.promises.copyFile(body.file, tmp));
      }
      await fs.promises.rename(tmp, dest);
      return dest;
    },
  };
}
