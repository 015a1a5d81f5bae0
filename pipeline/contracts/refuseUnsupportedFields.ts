import type { AgentContract } from './agentContract.ts';
import type { ChannelContract } from './channelContract.ts';
import type { PolicyContract } from './policyContract.ts';
import type { ProjectContract } from './projectContract.ts';
import type { RuntimeContract } from './runtimeContract.ts';

type Path = (string | number)[];

const notYet = (why: string) => `not supported yet: ${why}; remove it`;
const noPlugin = (type: string, registered: readonly string[]) =>
  `"${type}" is not supported yet: no channel plugin receives or sends it (supported: ${registered.join(', ')})`;

/**
 * Reports every field of a tenant file that the schemas accept but the runtime does not act on
 * yet, so `apply` refuses it by name instead of storing a promise nothing keeps. The contract
 * schemas themselves still read these fields: revisions stored before this refusal hold them
 * (with their old defaults) and must stay readable, for the runtime and for a rollback.
 * A channel type (of an account or a binding) is refused unless it is in `channelTypes`, the
 * types of the registered channel plugins: registering a plugin is what enables a type.
 */
export function refuseUnsupportedFields(
  tenant: {
    project: ProjectContract;
    agents: Record<string, AgentContract>;
    policies: Record<string, PolicyContract>;
    runtime: RuntimeContract;
    channels: Record<string, ChannelContract>;
  },
  issue: (path: Path, message: string) => void,
  channelTypes: readonly string[],
): void {
  const isPluginChannel = (type: string) => channelTypes.includes(type);
  const { project, runtime } = tenant;
  if (project.owners !== undefined)
    issue(['project', 'owners'], notYet('owners grant nothing; ACL members with admin do'));
  if (project.dataBoundary !== undefined) {
    issue(
      ['project', 'dataBoundary'],
      notYet('no region, retention or PII-class boundary is enforced'),
    );
  }
  if (project.approvals.approverRole === 'operator') {
    issue(
      ['project', 'approvals', 'approverRole'],
      '"operator" no longer decides approvals: give the deciding members the approver role and use approver (the default) or admin',
    );
  }
  project.bindings.forEach((binding, i) => {
    if (binding.channel !== undefined && !isPluginChannel(binding.channel))
      issue(['project', 'bindings', i, 'channel'], noPlugin(binding.channel, channelTypes));
  });

  for (const [name, agent] of Object.entries(tenant.agents)) {
    if (agent.inputSchema !== undefined) {
      issue(
        ['agents', name, 'inputSchema'],
        notYet('inbound messages are not checked against an input schema'),
      );
    }
  }
  for (const [name, policy] of Object.entries(tenant.policies)) {
    if (policy.privacy.storeTranscripts !== undefined) {
      issue(
        ['policies', name, 'privacy', 'storeTranscripts'],
        notYet('transcripts are always stored'),
      );
    }
  }

  if (runtime.timeouts.stageMs !== undefined) {
    issue(
      ['runtime', 'timeouts', 'stageMs'],
      notYet('a stage has no deadline of its own (timeouts.runMs bounds the run)'),
    );
  }
  if (runtime.retry !== undefined) {
    const why = notYet('stage retries are set by the platform, not by a tenant');
    const keys = Object.keys(runtime.retry);
    if (keys.length === 0) issue(['runtime', 'retry'], why);
    for (const key of keys) issue(['runtime', 'retry', key], why);
  }

  for (const [name, channel] of Object.entries(tenant.channels)) {
    if (!isPluginChannel(channel.type))
      issue(['channels', name, 'type'], noPlugin(channel.type, channelTypes));
  }
}
