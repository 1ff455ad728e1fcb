// livekit.AgentDispatchService: CreateDispatch, ListDispatch, DeleteDispatch as AgentDispatchClient
// sends them (roomAdmin for the room). The dispatcher (src/agents/server/) owns the jobs.
import {
  CreateAgentDispatchRequest,
  DeleteAgentDispatchRequest,
  ListAgentDispatchRequest,
  ListAgentDispatchResponse,
  type AgentDispatch,
} from '@livekit/protocol';
import { ensureAdminPermission } from '../../auth/permissions.ts';
import { invalidArgument } from '../../errors.ts';
import { checkMetadata, checkName } from './room.ts';
import { method, type TwirpService } from './router.ts';

/** What the service needs of the dispatcher. */
export interface DispatchBackend {
  createDispatch(req: { room: string; agentName: string; metadata: string; attributes?: Record<string, string> }): Promise<AgentDispatch>;
  listDispatches(room: string, dispatchId?: string): AgentDispatch[];
  deleteDispatch(room: string, dispatchId: string): AgentDispatch;
}

const AGENT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function agentDispatchService(dispatcher: DispatchBackend): TwirpService {
  return {
    name: 'livekit.AgentDispatchService',
    methods: {
      CreateDispatch: method(CreateAgentDispatchRequest, async (req, { claims, log }) => {
        ensureAdminPermission(claims, req.room);
        checkName(req.room, 'room');
        if (!AGENT_NAME.test(req.agentName)) {
          throw invalidArgument('agent_name must be 1-64 letters, digits, _ . - (the name the worker registered)', 'agent_name');
        }
        log.debug({ room: req.room, agent: req.agentName }, 'CreateDispatch');
        return dispatcher.createDispatch({
          room: req.room,
          agentName: req.agentName,
          metadata: checkMetadata(req.metadata),
          attributes: req.attributes,
        });
      }),
      ListDispatch: method(ListAgentDispatchRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        return new ListAgentDispatchResponse({ agentDispatches: dispatcher.listDispatches(checkName(req.room, 'room'), req.dispatchId || undefined) });
      }),
      DeleteDispatch: method(DeleteAgentDispatchRequest, async (req, { claims }) => {
        ensureAdminPermission(claims, req.room);
        if (!req.dispatchId) throw invalidArgument('dispatch_id must not be empty', 'dispatch_id');
        return dispatcher.deleteDispatch(checkName(req.room, 'room'), req.dispatchId);
      }),
    },
  };
}
