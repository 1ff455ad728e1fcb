// speaker: the active speaker (or a shared screen) large on the left, everyone else in a strip.
import { bySpeaking, firstScreenShare, participantTile, speakerTiles, themeColors, type LayoutTemplate } from '../../src/egress/composite/layoutKit.ts';

const speaker: LayoutTemplate = {
  maxTiles: 6,
  plan({ participants, speakers, width, height, theme }) {
    const colors = themeColors(theme);
    const ordered = bySpeaking(participants, speakers);
    const screen = firstScreenShare(participants);
    if (screen) {
      const main = { x: 0, y: 0, w: width, h: height, identity: screen.participant.identity, trackSid: screen.track.sid, label: screen.participant.name, fit: 'contain' as const };
      return { ...colors, tiles: speakerTiles(main, ordered, width, height) };
    }
    const [first, ...rest] = ordered;
    const main = first ? participantTile(first, { x: 0, y: 0, w: width, h: height }) : undefined;
    // The strip keeps join order, so tiles do not jump around as people speak.
    return { ...colors, tiles: speakerTiles(main, rest.sort((a, b) => a.joinedAt - b.joinedAt), width, height) };
  },
};

export default speaker;
