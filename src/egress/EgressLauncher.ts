// Kept for main.ts only, which still builds the egress service under this name; main.ts imports
// EgressService directly when the branches are merged, and this file goes.
export { EgressService as EgressLauncher } from './EgressService.ts';
