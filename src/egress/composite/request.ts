// StartRoomCompositeEgress and UpdateLayout as EgressClient sends them → the JobSpec of a room
// composite. Every refusal names the field (invalid_argument / not_found / unimplemented).
import { EgressStatus, RoomCompositeEgressRequest, type EgressInfo } from '@livekit/protocol';
import { ApiError, invalidArgument } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { JobSpec } from '../contract.ts';
import { encodedOutputs, initialInfo, outputsOf, roomOf, scrubOutputs, type EgressRoomLookup, type S3Defaults, type TemplateValues, type Validated } from '../request.ts';
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
  scrubOutputs(copy);
  return copy;
}

export async function validateRoomComposite(req: RoomCompositeEgressRequest, lookup: EgressRoomLookup, s3: S3Defaults): Promise<Validated> {
  const roomId = await roomOf(lookup, req.roomName);
  const layout = checkLayout(req.layout || DEFAULT_LAYOUT);
  if (req.audioOnly && req.videoOnly) throw invalidArgument('audio_only and video_only exclude each other', 'audio_only');
  if (req.customBaseUrl) throw new ApiError('unimplemented', 'custom_base_url (a web page template) needs a browser; roomgate composites with layout templates: put a module in templates/layouts/ and name it in layout');
  const o = outputsOf(req, req.output);
  const egressId = newId('EG_');
  const v: TemplateValues = { roomName: req.roomName, roomId, egressId };
  const outputs = encodedOutputs(o, v, !req.audioOnly, req.options, s3);
  if (req.videoOnly && outputs.file?.fileType === 'ogg') throw invalidArgument('file_type OGG holds audio only, and video_only asks for no audio', 'file_type');
  const spec: JobSpec = {
    egressId,
    roomName: req.roomName,
    roomId,
    source: { kind: 'room_composite', layout, audioOnly: req.audioOnly, videoOnly: req.videoOnly, trackSids: [] },
    ...outputs,
    // A composite always encodes: there is no single source to pass through.
    encoding: { ...outputs.encoding, passthroughAllowed: false },
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
