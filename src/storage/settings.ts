// Where an upload goes when it is not the local output folder: an S3-compatible bucket. Storage owns
// this shape; an egress request carries it (src/egress/contract.ts) and the worker hands it back here.
import { z } from 'zod';

export const S3Schema = z.object({
  accessKey: z.string(),
  secret: z.string(),
  sessionToken: z.string(),
  region: z.string(),
  endpoint: z.string(),
  bucket: z.string(),
  forcePathStyle: z.boolean(),
});
export type S3Settings = z.infer<typeof S3Schema>;
