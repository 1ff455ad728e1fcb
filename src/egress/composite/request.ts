// StartRoomCompositeEgress and UpdateLayout as EgressClient sends them → the JobSpec of a room
// composite. Every refusal names the field (invalid_argument / not_found / unimplemented).
import { EgressStatus, RoomCompositeEgressRequest, StreamOutput, type EgressInfo } from '@livekit/protocol';
import { ApiError, invalidArgument } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { JobSpec } from '../EgressTypes.ts';
import { checkOutputCounts, encodedFile, encodingFrom, initialInfo, outputsOf, roomOf, streamUrls, type EgressRoomLookup, type S3Defaults, type TemplateValues, type Validated } from '../request.ts';
import { redactStreamUrl } from '../urls.ts';
import { availableLayouts, DEFAULT_LAYOUT, resolveLayout } from './templates.ts';

/** The layout name a request may use, normalised; refused with the list of layouts otherwise. */
export function checkLayout(layout: string): string {
  const resolved = resolveLayout(layout);
  if (!resolved) {
    const names = availableLayouts().flatMap((n) => [n, `${n}-light`, `${n}-dark`]);
    throw invalidArgument(`layout '${layout.slice(0, 64)}' does not exist; use one of ${names.join(', ')} (or add templates/layouts/<name>.ts)`, 'layout');
  }
  return resolved.name;
}

/** The echo of the request in EgressInfo.request, without stream keys and S3 credentials. */
function redact(req: RoomCompositeEgressRequest, layout: string): RoomCompositeEgressRequest {
  const copy = req.clone();
  copy.layout = layout;
  const scrubStream = (s: StreamOutput) => {
    s.urls = s.urls.map(redactStreamUrl);
  };
  const scrubS3 = (o: { output: { case: string | undefined; value?: unknown } }) => {
    if (o.output.case === 's3') {
      const v = o.output.value as { accessKey: string; secret: string; sessionToken: string };
      v.accessKey = '';
      v.secret = '';
      v.sessionToken = '';
    }
  };
  copy.fileOutputs.forEach(scrubS3);
  copy.streamOutputs.forEach(scrubStream);
  if (copy.output.case === 'stream') scrubStream(copy.output.value);
  if (copy.output.case === 'file') scrubS3(copy.output.value);
  return copy;
}

export async function validateRoomComposite(req: RoomCompositeEgressRequest, lookup: EgressRoomLookup, s3: S3Defaults): Promise<Validated> {
  const roomId = await roomOf(lookup, req.roomName);
  const layout = checkLayout(req.layout || DEFAULT_LAYOUT);
  if (req.audioOnly && req.videoOnly) throw invalidArgument('audio_only and video_only exclude each other', 'audio_only');
  if (req.customBaseUrl) throw new ApiError('unimplemented', 'custom_base_url (a web page template) needs a browser; roomgate composites with layout templates: put a module in templates/layouts/ and name it in layout');
  const o = outputsOf(req, req.output);
  checkOutputCounts(o);
  const v: TemplateValues = { roomName: req.roomName, roomId };
  const urls = o.streamOutputs[0] ? streamUrls(o.streamOutputs[0]) : undefined;
  const file = o.fileOutputs[0] ? encodedFile(o.fileOutputs[0], v, !req.audioOnly, s3) : undefined;
  if (!file && (!urls || urls.length === 0)) throw invalidArgument('the stream output has no urls and there is no other output', 'stream_outputs.urls');
  if (req.videoOnly && file?.fileType === 'ogg') throw invalidArgument('file_type OGG holds audio only, and video_only asks for no audio', 'file_type');
  // A composite always encodes: there is no single source to pass through.
  const encoding = { ...encodingFrom(req.options, urls !== undefined), passthroughAllowed: false };
  const egressId = newId('EG_');
  const spec: JobSpec = {
    egressId,
    roomName: req.roomName,
    roomId,
    source: { kind: 'room_composite', layout, audioOnly: req.audioOnly, videoOnly: req.videoOnly, trackSids: [] },
    encoding,
    ...(file ? { file } : {}),
    ...(urls ? { stream: { urls } } : {}),
    createdAt: Date.now(),
  };
  return { spec, info: initialInfo(spec, { case: 'roomComposite', value: redact(req, layout) }) };
}

/** The layout recorded in an EgressInfo's echoed request (UpdateLayout changes it). */
export function setInfoLayout(info: EgressInfo, layout: string): void {
  if (info.request.case === 'roomComposite') info.request.value.layout = layout;
}

export function canUpdateLayout(info: EgressInfo): void {
  if (info.status !== EgressStatus.EGRESS_STARTING && info.status !== EgressStatus.EGRESS_ACTIVE) {
    throw new ApiError('failed_precondition', `egress '${info.egressId}' is ${EgressStatus[info.status]}; its layout changes only while it is starting or active`);
  }
  if (info.request.case !== 'roomComposite') throw new ApiError('failed_precondition', `egress '${info.egressId}' is not a room composite egress; only those have a layout`);
}
