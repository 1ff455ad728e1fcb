// The four track sources by name, as LiveKit numbers them, and the media kind each must carry.
import { TrackSource } from '@livekit/protocol';
import type { TrackSourceName } from '../ParticipantTypes.ts';

export const SOURCE_BY_NAME: Record<TrackSourceName, TrackSource> = {
  camera: TrackSource.CAMERA,
  microphone: TrackSource.MICROPHONE,
  screen_share: TrackSource.SCREEN_SHARE,
  screen_share_audio: TrackSource.SCREEN_SHARE_AUDIO,
};

export const SOURCE_KIND: Record<TrackSourceName, 'audio' | 'video'> = {
  camera: 'video',
  microphone: 'audio',
  screen_share: 'video',
  screen_share_audio: 'audio',
};

export function sourceNames(sources: TrackSource[]): TrackSourceName[] {
  return (Object.keys(SOURCE_BY_NAME) as TrackSourceName[]).filter((n) => sources.includes(SOURCE_BY_NAME[n]));
}
