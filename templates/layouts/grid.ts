// grid: every participant in a tile (1, 2, 4, 9 or 16 cells); a shared screen takes the main area
// with the participants in a strip beside it, as LiveKit's grid does.
import { bySpeaking, firstScreenShare, gridCells, participantTile, speakerTiles, themeColors, type LayoutTemplate } from '../../src/egress/composite/layoutKit.ts';

const MAX = 16;

const grid: LayoutTemplate = {
  maxTiles: MAX,
  plan({ participants, speakers, width, height, theme }) {
    const colors = themeColors(theme);
    const screen = firstScreenShare(participants);
    if (screen) {
      const main = { x: 0, y: 0, w: width, h: height, identity: screen.participant.identity, trackSid: screen.track.sid, label: screen.participant.name, fit: 'contain' as const };
      return { ...colors, tiles: speakerTiles(main, bySpeaking(participants, speakers), width, height) };
    }
    const shown = participants.length > MAX ? bySpeaking(participants, speakers).slice(0, MAX).sort((a, b) => a.joinedAt - b.joinedAt) : participants;
    const cells = gridCells(shown.length, { x: 0, y: 0, w: width, h: height });
    return { ...colors, tiles: shown.map((p, i) => participantTile(p, cells[i]!)) };
  },
};

export default grid;
