// roomgate/agents: server-side programmable participants. A worker registers an agent with the
// gateway and runs entry(ctx) for each job the gateway dispatches to it.
export { defineAgent, runWorker, runIfMain, AgentWorker, type AgentDefinition, type WorkerOptions, type WorkerEvents } from './worker.ts';
export { JobContext, type JobInfo } from './job.ts';
export { AgentRoom, type AgentParticipant, type AgentRoomEvents, type DataMessage, type LocalAudioTrack, type RemoteTrackInfo } from './room.ts';
export { AudioSource, rmsDbfs, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, type AudioFrame } from './audio.ts';
