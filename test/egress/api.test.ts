// The Egress API's refusals, each with its Twirp code and a message naming what is wrong, and the
// SDK's double-sent single output (legacy field + list) counted once. No worker runs here.
import { AccessToken, EgressClient, EncodedFileOutput, S3Upload, StreamOutput, DirectFileOutput } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeParticipant } from '../../src/client/node.ts';
import type { Gateway } from '../../src/main.ts';
import { twirpError } from '../helpers/errors.ts';
import { API_KEY, API_SECRET, startTestGateway } from '../helpers/gateway.ts';
import { join } from '../helpers/participants.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let gw: Gateway;
let egress: EgressClient;
let alice: NodeParticipant;
let videoSid = '';

beforeAll(async () => {
  redis = await startRedis();
  gw = await startTestGateway({ ROOMGATE_REDIS_URL: redis.url });
  egress = new EgressClient(gw.url, API_KEY, API_SECRET);
  alice = await join(gw.url, 'api', 'alice');
  videoSid = (await alice.publishFromFfmpeg({ kind: 'video', source: 'camera', input: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=15'] })).trackSid;
});

afterAll(async () => {
  await alice?.leave();
  await gw?.close();
  await redis?.stop();
});

async function raw(method: string, body: unknown, grant: Record<string, boolean> = { roomRecord: true }) {
  const at = new AccessToken(API_KEY, API_SECRET);
  at.addGrant(grant);
  const res = await fetch(`${gw.url}/twirp/livekit.Egress/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${await at.toJwt()}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { code?: string; msg?: string; fileResults?: unknown[] } };
}

const file = (filepath = 'x') => ({ file: new EncodedFileOutput({ filepath }) });

describe('egress API refusals', () => {
  it('missing room → not_found', async () => {
    expect(await twirpError(egress.startParticipantEgress('nope', 'alice', file()))).toEqual({ code: 'not_found', message: "room 'nope' does not exist" });
  });

  it('unknown track → not_found', async () => {
    const e = await twirpError(egress.startTrackEgress('api', new DirectFileOutput({ filepath: 'x' }), 'TR_missing'));
    expect(e).toEqual({ code: 'not_found', message: "track 'TR_missing' is not published in room 'api'" });
  });

  it('no outputs → invalid_argument', async () => {
    const e = await twirpError(egress.startParticipantEgress('api', 'alice', {}));
    expect(e).toEqual({ code: 'invalid_argument', message: 'no outputs: give a file, stream, segments or image output' });
  });

  it('two file outputs → invalid_argument', async () => {
    const r = await raw('StartParticipantEgress', { roomName: 'api', identity: 'alice', fileOutputs: [{ filepath: 'a' }, { filepath: 'b' }] });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'invalid_argument', msg: 'at most one file output is allowed (got 2)' });
  });

  it('a single output sent twice by the SDK (legacy field + list) counts once', async () => {
    const info = await egress.startTrackCompositeEgress('api', new EncodedFileOutput({ filepath: 'dup' }), { videoTrackId: videoSid });
    expect(info.fileResults).toHaveLength(1);
    expect(info.fileResults[0]!.filename).toBe('dup.mp4');
    await egress.stopEgress(info.egressId);
  });

  it('bad RTMP URL scheme → invalid_argument', async () => {
    const e = await twirpError(egress.startParticipantEgress('api', 'alice', { stream: new StreamOutput({ urls: ['http://example.com/live/key'] }) }));
    expect(e).toEqual({ code: 'invalid_argument', message: "stream url scheme 'http:' is not supported; use rtmp:// or rtmps:// (or mux://, twitch://)" });
    const noKey = await twirpError(egress.startParticipantEgress('api', 'alice', { stream: new StreamOutput({ urls: ['rtmp://example.com/live'] }) }));
    expect(noKey.code).toBe('invalid_argument');
    expect(noKey.message).toMatch(/must name an app and a stream key/);
  });

  it('bad S3 bucket name → invalid_argument', async () => {
    const out = new EncodedFileOutput({ filepath: 'x', output: { case: 's3', value: new S3Upload({ bucket: 'Bad_Bucket', accessKey: 'k', secret: 's' }) } });
    const e = await twirpError(egress.startParticipantEgress('api', 'alice', { file: out }));
    expect(e.code).toBe('invalid_argument');
    expect(e.message).toBe("s3.bucket 'Bad_Bucket' is not a valid bucket name: may hold lowercase letters, digits, dots and hyphens, and must start and end with a letter or digit");
  });

  it('path escapes, unknown egress, missing grant, web egress', async () => {
    expect((await twirpError(egress.startParticipantEgress('api', 'alice', file('../../etc/x')))).message).toBe("filepath '../../etc/x' must not contain '..'");
    expect(await twirpError(egress.stopEgress('EG_nope'))).toEqual({ code: 'not_found', message: "egress 'EG_nope' does not exist" });
    expect((await raw('ListEgress', {}, { roomAdmin: true })).body.code).toBe('permission_denied');
    expect((await twirpError(egress.startWebEgress('https://example.com', file()))).code).toBe('unimplemented');
  });

  it('dot-folders (the workers\' .staging) and stream URLs with control characters → invalid_argument', async () => {
    const dot = await twirpError(egress.startParticipantEgress('api', 'alice', file('.staging/EG_other/rec')));
    expect(dot).toEqual({ code: 'invalid_argument', message: "filepath '.staging/EG_other/rec' must not have a folder or file name starting with '.' ('.staging')" });
    const tab = await twirpError(egress.startParticipantEgress('api', 'alice', { stream: new StreamOutput({ urls: ['rt\tmp://127.0.0.1/live/key'] }) }));
    expect(tab).toEqual({ code: 'invalid_argument', message: 'stream url must not contain control characters (tab, line break, …)' });
  });

  it('UpdateStream on an egress without a stream output → failed_precondition; stop twice → failed_precondition', async () => {
    const info = await egress.startParticipantEgress('api', 'alice', file('fp'));
    expect((await twirpError(egress.updateStream(info.egressId, ['rtmp://example.com/live/k']))).code).toBe('failed_precondition');
    await egress.stopEgress(info.egressId); // queued (no worker here): ABORTED at once
    const again = await twirpError(egress.stopEgress(info.egressId));
    expect(again).toEqual({ code: 'failed_precondition', message: `egress '${info.egressId}' has already ended (EGRESS_ABORTED)` });
    const listed = await egress.listEgress({ roomName: 'api', active: true });
    expect(listed.find((i) => i.egressId === info.egressId)).toBeUndefined();
  });
});
