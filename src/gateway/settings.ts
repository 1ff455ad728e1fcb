// Values startGateway derives from the config, computed once here instead of at each use.
import { isIP } from 'node:net';
import os from 'node:os';
import type { Config } from '../config.ts';
import type { ListenSettings } from '../media/webrtcTransport.ts';
import type { IceConfig } from '../signaling/iceServers.ts';

export interface GatewaySettings {
  /** The IP media sockets listen on: the bind address when it is one, else all interfaces. */
  listenIp: string;
  /** WebRTC listen settings shared by rooms, WHIP, WHEP and the egress taps. */
  listen: ListenSettings;
  iceConfig: IceConfig;
  /** Where the RTMP listener binds ('localhost' is spelled as the loopback IP). */
  rtmpBind: string;
  /** The bind address as a URL host (IPv6 in brackets). */
  urlHost: string;
  /** The host a process beside the gateway uses to reach the API (loopback when bound to all interfaces). */
  localApiHost: string;
  /** Where publishers reach this gateway: configured, else from the announced IP or bind address. */
  publicIngestUrls: { rtmp: string; whip: string };
  /** The key that signs tokens the gateway mints for itself (agent joins, console previews). */
  serviceKey: { apiKey: string; apiSecret: string };
  webhookKey: { apiKey: string; apiSecret: string };
  agentOfferTimeoutMs: number;
  rtmpAdmission: { maxPending: number; maxPendingPerIp: number; firstBytesMs: number; publishMs: number };
  /** How long the egress worker child may take to drain on shutdown. */
  egressDrainMs: number;
  /** Load each egress kind reserves on a worker (console). */
  egressCosts: Record<'track' | 'track_composite' | 'participant' | 'room_composite', number>;
}

export function gatewaySettings(config: Config): GatewaySettings {
  const listenIp = config.bind === 'localhost' ? '127.0.0.1' : isIP(config.bind) ? config.bind : '0.0.0.0';
  const allInterfaces = config.bind === '0.0.0.0' || config.bind === '::';
  const urlHost = config.bind.includes(':') ? `[${config.bind}]` : config.bind;
  const serviceApiKey = Object.keys(config.keys)[0]!;
  const webhookApiKey = config.webhook.api_key ?? serviceApiKey;
  return {
    listenIp,
    listen: { listenIp, ...(config.rtc.announced_ip ? { announcedIp: config.rtc.announced_ip } : {}) },
    iceConfig: {
      stunUrls: config.rtc.stun_urls,
      turnUrls: config.turn.urls,
      turnSecret: config.turn.secret,
      turnTtl: config.turn.ttl,
    },
    rtmpBind: config.bind === 'localhost' ? '127.0.0.1' : config.bind,
    urlHost,
    localApiHost: allInterfaces ? '127.0.0.1' : urlHost,
    publicIngestUrls: publicIngestUrls(config, allInterfaces),
    serviceKey: { apiKey: serviceApiKey, apiSecret: config.keys[serviceApiKey]! },
    webhookKey: { apiKey: webhookApiKey, apiSecret: config.keys[webhookApiKey]! },
    agentOfferTimeoutMs: config.agents.offer_timeout * 1000,
    rtmpAdmission: {
      maxPending: config.rtmp.max_pending,
      maxPendingPerIp: config.rtmp.max_pending_per_ip,
      firstBytesMs: config.rtmp.first_bytes_timeout * 1000,
      publishMs: config.rtmp.publish_timeout * 1000,
    },
    egressDrainMs: (config.egress.drain_timeout + 10) * 1000,
    egressCosts: {
      track: config.egress.cost_track,
      track_composite: config.egress.cost_track_composite,
      participant: config.egress.cost_participant,
      room_composite: config.egress.cost_room_composite,
    },
  };
}

function publicIngestUrls(config: Config, allInterfaces: boolean): { rtmp: string; whip: string } {
  const bindHost = allInterfaces ? os.hostname() : config.bind;
  const host = config.rtc.announced_ip ?? bindHost;
  const bracketed = host.includes(':') ? `[${host}]` : host;
  return {
    rtmp: config.rtmp.base_url ?? `rtmp://${bracketed}:${config.rtmp.port}/live`,
    whip: config.whip.base_url ?? `http://${bracketed}:${config.port}/w`,
  };
}
