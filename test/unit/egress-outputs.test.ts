// Egress outputs as a request names them (issue 19): S3 settings are the request's block or the
// operator's default as a whole, stream URLs reach FFmpeg normalised and without control
// characters, no output name starts with `.`, default names are unique per egress, and the
// secrets of job data are sealed.
import { EncodedFileOutput, ParticipantEgressRequest, S3Upload, SegmentedFileOutput } from '@livekit/protocol';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../src/errors.ts';
import { jobDataKey, seal, sealSpec, unseal, unsealSpec } from '../../src/egress/jobSecrets.ts';
import { relativeParts, s3From, safeRelative, type S3Defaults } from '../../src/egress/outputPaths.ts';
import { withNumberSuffix } from '../../src/storage/names.ts';
import { validateParticipant, type EgressRoomLookup } from '../../src/egress/request.ts';
import { normaliseStreamUrl } from '../../src/egress/urls.ts';

const operator: S3Defaults = { bucket: 'operator-bucket', region: 'eu-west-1', endpoint: 'http://127.0.0.1:9000', access_key: 'OPERATORKEY', secret: 'OPERATORSECRET', force_path_style: true };
const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    if (err instanceof ApiError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal');
};

describe('S3 settings', () => {
  it('a request block is used as it is: no operator credential reaches a caller-chosen endpoint', () => {
    const s3 = s3From(new S3Upload({ bucket: 'mine', endpoint: 'http://127.0.0.1:9999' }), operator)!;
    expect(s3).toEqual({ bucket: 'mine', endpoint: 'http://127.0.0.1:9999', region: 'us-east-1', accessKey: '', secret: '', sessionToken: '', forcePathStyle: false });
    expect(refusal(() => s3From(new S3Upload({ endpoint: 'http://127.0.0.1:9999' }), operator)).message).toMatch(/^s3.bucket is required/);
    expect(refusal(() => s3From(new S3Upload({ bucket: 'mine', accessKey: 'k' }), operator))).toEqual({ code: 'invalid_argument', message: 's3.access_key and s3.secret go together' });
  });

  it('without a request block the operator default is used whole', () => {
    expect(s3From(undefined, operator)).toEqual({ bucket: 'operator-bucket', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1', accessKey: 'OPERATORKEY', secret: 'OPERATORSECRET', sessionToken: '', forcePathStyle: true });
    expect(s3From(undefined, { force_path_style: false })).toBeUndefined();
  });
});

describe('stream URLs', () => {
  it('refuses control characters, which the URL parser would drop silently', () => {
    expect(() => normaliseStreamUrl('rt\tmp://127.0.0.1/live/key')).toThrow(/control characters/);
    expect(() => normaliseStreamUrl('rtmp://127.0.0.1/live/ke\ny')).toThrow(/control characters/);
    expect(() => normaliseStreamUrl('rtmp://127.0.0.1/live/key\u0000')).toThrow(/control characters/);
  });

  it('hands FFmpeg the parser\'s serialisation, not the caller\'s string', () => {
    expect(normaliseStreamUrl(' rtmp://127.0.0.1/live/./x/../a b ')).toBe('rtmp://127.0.0.1/live/a%20b');
    expect(normaliseStreamUrl('twitch://abc')).toBe('rtmp://live.twitch.tv/app/abc');
  });
});

describe('output names', () => {
  it('refuses a folder or file name starting with a dot (.staging is the worker\'s)', () => {
    expect(refusal(() => relativeParts('.staging/EG_x.segments/seg', 'segments.filename_prefix')).message).toBe(
      "segments.filename_prefix '.staging/EG_x.segments/seg' must not have a folder or file name starting with '.' ('.staging')",
    );
    expect(refusal(() => safeRelative('a/.hidden/b')).code).toBe('invalid_argument');
    expect(safeRelative('./a/b.mp4')).toBe('a/b.mp4');
  });

  it('numbers a taken name before its extension', () => {
    expect(withNumberSuffix('rec/a.mp4', 0)).toBe('rec/a.mp4');
    expect(withNumberSuffix('rec/a.mp4', 2)).toBe('rec/a-2.mp4');
    expect(withNumberSuffix('rec.d/a', 1)).toBe('rec.d/a-1');
  });

  it('default names carry the egress id: two egresses started in one second get two names', async () => {
    const lookup: EgressRoomLookup = { roomSid: async () => 'RM_x', track: () => undefined };
    const req = () =>
      new ParticipantEgressRequest({ roomName: 'standup', identity: 'alice', fileOutputs: [new EncodedFileOutput({ filepath: 'rec/' })], segmentOutputs: [new SegmentedFileOutput({})] });
    const [a, b] = await Promise.all([validateParticipant(req(), lookup, { force_path_style: false }), validateParticipant(req(), lookup, { force_path_style: false })]);
    expect(a.spec.file!.filepath).toMatch(new RegExp(`^rec/standup-\\d{4}-\\d{2}-\\d{2}T\\d{6}-${a.spec.egressId}\\.mp4$`));
    expect(b.spec.file!.filepath).toContain(b.spec.egressId);
    expect(a.spec.segments!.playlistName).toContain(a.spec.egressId);
    expect(a.spec.file!.filepath).not.toBe(b.spec.file!.filepath);
  });
});

describe('sealed job data', () => {
  const key = jobDataKey('a-worker-secret-of-at-least-32-characters');

  it('seals and opens; another key cannot open; an unsealed value passes as it is', () => {
    const sealed = seal('rtmp://h/app/key', key);
    expect(sealed).toMatch(/^enc:v1:/);
    expect(unseal(sealed, key)).toBe('rtmp://h/app/key');
    expect(() => unseal(sealed, jobDataKey('another-worker-secret-of-32-characters!!'))).toThrow(/egress.worker_secret/);
    expect(unseal('rtmp://h/app/key', key)).toBe('rtmp://h/app/key');
  });

  it('sealSpec hides stream URLs and S3 credentials only', () => {
    const s3 = { bucket: 'b', region: 'r', endpoint: '', accessKey: 'AK', secret: 'SK', sessionToken: '', forcePathStyle: false };
    const spec = {
      egressId: 'EG_1', roomName: 'r', roomId: 'RM_1', createdAt: 1,
      source: { kind: 'participant' as const, identity: 'a', screenShare: false },
      stream: { urls: ['rtmp://h/app/secretkey'] },
      file: { filepath: 'x.mp4', fileType: 'mp4' as const, s3 },
    };
    const sealed = sealSpec(spec, key);
    const json = JSON.stringify(sealed);
    expect(json).not.toContain('secretkey');
    expect(json).not.toContain('"SK"');
    expect(sealed.file!.filepath).toBe('x.mp4');
    expect(unsealSpec(sealed, key)).toEqual(spec);
  });
});
