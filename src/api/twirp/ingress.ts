// livekit.Ingress: CreateIngress, UpdateIngress, ListIngress, DeleteIngress as IngressClient sends
// them. Definitions live in the IngressStore; the RTMP/WHIP servers look stream keys up there.
import {
  CreateIngressRequest,
  DeleteIngressRequest,
  IngressInfo,
  IngressInput,
  IngressState,
  IngressState_Status,
  ListIngressRequest,
  ListIngressResponse,
  UpdateIngressRequest,
} from '@livekit/protocol';
import { ensureIngressAdminPermission } from '../../auth/permissions.ts';
import { ApiError, invalidArgument, notFound } from '../../errors.ts';
import { newId, newSecret } from '../../ids.ts';
import type { IngressStore } from '../../store/IngressStore.ts';
import { checkMetadata, checkName } from './room.ts';
import { method, type TwirpService } from './router.ts';

export interface IngressUrls {
  /** e.g. rtmp://host:1935/live — the publisher appends /<streamKey>. */
  rtmp: string;
  /** e.g. https://host/w — the publisher sends the key as Bearer. */
  whip: string;
}

/** What the API needs of the live sessions: DeleteIngress stops a stream, URL input starts one. */
export interface IngressControl {
  stop(ingressId: string): void;
  startUrl(info: IngressInfo): void;
  /** True when no more URL pulls may run now (ingress.url_max_sessions). */
  urlFull(): boolean;
}

const URL_SCHEMES = new Set(['http:', 'https:', 'srt:']);

/** URL input accepts what LiveKit accepts: http(s) files and playlists, and SRT. */
function checkSourceUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalidArgument(`url '${raw.slice(0, 200)}' is not a valid URL`, 'url');
  }
  if (!URL_SCHEMES.has(url.protocol)) throw invalidArgument(`url scheme '${url.protocol}' is not supported; use http, https or srt`, 'url');
  return url.toString();
}

export function ingressService(store: IngressStore, urls: IngressUrls, live: IngressControl): TwirpService {
  const find = (id: string): IngressInfo => {
    const info = store.get(id);
    if (!info) throw notFound(`ingress '${id}' does not exist`);
    return info;
  };
  return {
    name: 'livekit.Ingress',
    methods: {
      CreateIngress: method(CreateIngressRequest, async (req, { claims, log }) => {
        ensureIngressAdminPermission(claims);
        // An RTMP request carries no inputType: RTMP_INPUT is the proto default (0).
        const isUrl = req.inputType === IngressInput.URL_INPUT;
        if (!isUrl && req.inputType !== IngressInput.RTMP_INPUT && req.inputType !== IngressInput.WHIP_INPUT) {
          throw invalidArgument(`unknown input_type ${req.inputType}`, 'input_type');
        }
        const sourceUrl = isUrl ? checkSourceUrl(req.url) : undefined;
        if (isUrl && live.urlFull()) {
          throw new ApiError('resource_exhausted', 'too many URL ingresses are running (ingress.url_max_sessions); try again when one ends');
        }
        checkName(req.roomName, 'room');
        checkName(req.participantIdentity, 'identity');
        checkMetadata(req.participantMetadata);
        // Passthrough unless asked (no mandatory RTMP transcode); the deprecated bypass flag is honoured.
        const enableTranscoding = req.enableTranscoding ?? (req.bypassTranscoding ? false : undefined);
        const info = new IngressInfo({
          ingressId: newId('IN_'),
          name: req.name,
          // A URL ingress has no publisher, so no key; it runs once (not reusable), as in LiveKit.
          streamKey: isUrl ? '' : newSecret(128),
          url: sourceUrl ?? (req.inputType === IngressInput.WHIP_INPUT ? urls.whip : urls.rtmp),
          inputType: req.inputType,
          ...(enableTranscoding !== undefined ? { enableTranscoding } : {}),
          bypassTranscoding: !(enableTranscoding ?? false),
          ...(req.audio ? { audio: req.audio } : {}),
          ...(req.video ? { video: req.video } : {}),
          roomName: req.roomName,
          participantIdentity: req.participantIdentity,
          participantName: req.participantName,
          participantMetadata: req.participantMetadata,
          reusable: !isUrl,
          enabled: req.enabled ?? true,
          state: new IngressState({ status: IngressState_Status.ENDPOINT_INACTIVE }),
        });
        await store.put(info);
        log.info({ ingress: info.ingressId, room: info.roomName, input: IngressInput[info.inputType] }, 'ingress created');
        if (isUrl) live.startUrl(info);
        return info;
      }),
      UpdateIngress: method(UpdateIngressRequest, async (req, { claims }) => {
        ensureIngressAdminPermission(claims);
        const info = find(req.ingressId);
        if (!info.reusable) throw new ApiError('failed_precondition', 'a URL ingress cannot be updated; delete it and create a new one');
        // Empty strings and absent optionals leave a field unchanged, as in LiveKit.
        if (req.name) info.name = req.name;
        if (req.roomName) info.roomName = checkName(req.roomName, 'room');
        if (req.participantIdentity) info.participantIdentity = checkName(req.participantIdentity, 'identity');
        if (req.participantName) info.participantName = req.participantName;
        if (req.participantMetadata) info.participantMetadata = checkMetadata(req.participantMetadata);
        const enableTranscoding = req.enableTranscoding ?? (req.bypassTranscoding === undefined ? undefined : !req.bypassTranscoding);
        if (enableTranscoding !== undefined) {
          info.enableTranscoding = enableTranscoding;
          info.bypassTranscoding = !enableTranscoding;
        }
        if (req.audio) info.audio = req.audio;
        if (req.video) info.video = req.video;
        if (req.enabled !== undefined) info.enabled = req.enabled;
        await store.put(info);
        return info;
      }),
      ListIngress: method(ListIngressRequest, async (req, { claims }) => {
        ensureIngressAdminPermission(claims);
        return new ListIngressResponse({ items: store.list({ roomName: req.roomName, ingressId: req.ingressId }) });
      }),
      DeleteIngress: method(DeleteIngressRequest, async (req, { claims, log }) => {
        ensureIngressAdminPermission(claims);
        const info = find(req.ingressId);
        live.stop(info.ingressId);
        await store.delete(info.ingressId);
        log.info({ ingress: info.ingressId }, 'ingress deleted');
        return info;
      }),
    },
  };
}
