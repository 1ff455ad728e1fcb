// single-speaker: only the active speaker (or a shared screen), full canvas.
import { bySpeaking, firstScreenShare, participantTile, themeColors, type LayoutTemplate } from '../../src/egress/composite/layoutKit.ts';

const singleSpeaker: LayoutTemplate = {
  maxTiles: 1,
  plan({ participants, speakers, width, height, theme }) {
    const colors = themeColors(theme);
    const screen = firstScreenShare(participants);
    if (screen) {
      return { ...colors, tiles: [{ x: 0, y: 0, w: width, h: height, identity: screen.participant.identity, trackSid: screen.track.sid, label: screen.participant.name, fit: 'contain' }] };
    }
    const first = bySpeaking(participants, speakers)[0];
    return { ...colors, tiles: first ? [participantTile(first, { x: 0, y: 0, w: width, h: height })] : [] };
  },
};

export default singleSpeaker;
