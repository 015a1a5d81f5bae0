import type { CommonQueryMethods } from 'slonik';
import type { Run } from '../../db/runs.ts';
import type { ContractKind } from '../contracts/common.ts';
import type { ContractBodies } from '../contracts/tenantFile.ts';
import { IntegrityError } from '../errors.ts';
import type { ContractReader } from './createContractReader.ts';

/** The contract bodies a resolved run pinned, by kind. */
export type PinnedContracts = {
  project: ContractBodies['project'];
  channel: ContractBodies['channel'];
  agent: ContractBodies['agent'];
  policy: ContractBodies['policy'];
  runtime: ContractBodies['runtime'];
  gateway: ContractBodies['mcp_gateway'] | null;
  /** The pinned policy's name (the agent's `policy`). */
  policyName: string;
};

/**
 * The revisions a run pinned at resolve, never the currently active ones: a contract activated
 * while the run is in flight does not change it.
 */
export async function loadPinnedContracts(
  ctx: { contracts: ContractReader },
  db: CommonQueryMethods,
  run: Run,
): Promise<PinnedContracts> {
  const find = (kind: ContractKind) => {
    const entry = Object.entries(run.pinned).find(([key]) => key.startsWith(`${kind}/`));
    return entry ? { name: entry[0].slice(kind.length + 1), revisionId: entry[1] } : null;
  };
  const load = async <K extends ContractKind>(kind: K): Promise<ContractBodies[K]> => {
    const pin = find(kind);
    if (!pin) throw new IntegrityError('RUN_NOT_PINNED', `run ${run.runId} has no pinned ${kind}`);
    const loaded = await ctx.contracts.pinned(db, {
      projectId: run.projectId,
      kind,
      revisionId: pin.revisionId,
    });
    return loaded.body;
  };
  const gatewayPin = find('mcp_gateway');
  // One after another: a transaction's connection runs one query at a time.
  const project = await load('project');
  const channel = await load('channel');
  const agent = await load('agent');
  const policy = await load('policy');
  const runtime = await load('runtime');
  const gateway = gatewayPin ? await load('mcp_gateway') : null;
  return { project, channel, agent, policy, runtime, gateway, policyName: find('policy')!.name };
}

/** Only the pinned channel contract (deliver needs nothing else), or null before resolve. */
export async function loadPinnedChannel(
  ctx: { contracts: ContractReader },
  db: CommonQueryMethods,
  run: Run,
): Promise<ContractBodies['channel'] | null> {
  const entry = Object.entries(run.pinned).find(([key]) => key.startsWith('channel/'));
  if (!entry) return null;
  return (
    await ctx.contracts.pinned(db, {
      projectId: run.projectId,
      kind: 'channel',
      revisionId: entry[1],
    })
  ).body;
}
