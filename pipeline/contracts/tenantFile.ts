import { z } from 'zod';
import { AgentContract } from './agentContract.ts';
import { ChannelContract } from './channelContract.ts';
import {
  ChannelType,
  Identifier,
  isWellFormed,
  ProjectId,
  riskAtMost,
  ToolId,
  type ContractKind,
} from './common.ts';
import { gatewayToolIndex, McpGatewayContract } from './mcpGatewayContract.ts';
import { PolicyContract } from './policyContract.ts';
import { ProjectContract } from './projectContract.ts';
import { refuseUnsupportedFields } from './refuseUnsupportedFields.ts';
import { RuntimeContract } from './runtimeContract.ts';

/** Each contract kind's schema, to re-validate a stored body by its kind. */
export const CONTRACT_SCHEMAS = {
  project: ProjectContract,
  agent: AgentContract,
  mcp_gateway: McpGatewayContract,
  policy: PolicyContract,
  runtime: RuntimeContract,
  channel: ChannelContract,
} as const satisfies Record<ContractKind, z.ZodType>;

/** The parsed body type of each contract kind. */
export type ContractBodies = {
  [K in ContractKind]: z.infer<(typeof CONTRACT_SCHEMAS)[K]>;
};

const named = <T extends z.ZodType>(schema: T) => z.record(Identifier, schema);

/**
 * The GitOps file: one project and all its contracts. Beyond each contract's own schema it
 * checks every reference between them — bindings, grants, tools against the agent's safety
 * ceiling and context domain — and reports each problem at the path of the offending field.
 * A field the runtime does not act on yet is refused by name ({@link refuseUnsupportedFields}),
 * and so is a channel type outside `channelTypes` (apply passes its registry's types).
 */
export function tenantFileSchema(channelTypes: readonly ChannelType[]) {
  return z
    .strictObject({
      apiVersion: z.literal('awooop/v1'),
      project: ProjectContract.extend({ id: ProjectId }),
      agents: named(AgentContract).refine(
        (a) => Object.keys(a).length > 0,
        'needs at least one agent',
      ),
      mcpGateway: McpGatewayContract.prefault({}),
      policies: named(PolicyContract).refine(
        (p) => Object.keys(p).length > 0,
        'needs at least one policy',
      ),
      runtime: RuntimeContract,
      channels: named(ChannelContract).default({}),
    })
    .superRefine((tenant, ctx) => {
      type Path = (string | number)[];
      const issue = (path: Path, message: string) =>
        ctx.addIssue({ code: 'custom', path, message });
      // A name or tool id that fails its own format check was reported at its field already;
      // looking it up as well would only repeat the same mistake.
      const isName = (value: string) => isWellFormed(Identifier, value);
      const { project, agents, channels, policies } = tenant;
      const agentNames = Object.keys(agents);
      const mustBeAgent = (name: string, path: Path) => {
        if (!isName(name) || name in agents) return;
        issue(
          path,
          agentNames.length > 0
            ? `unknown agent "${name}"; agents are ${agentNames.join(', ')}`
            : `unknown agent "${name}"`,
        );
      };

      mustBeAgent(project.defaultAgent, ['project', 'defaultAgent']);
      project.bindings.forEach((binding, i) => {
        mustBeAgent(binding.agent, ['project', 'bindings', i, 'agent']);
        if (binding.account === undefined || !isName(binding.account)) return;
        const account = channels[binding.account];
        const path = ['project', 'bindings', i, 'account'];
        if (!account) issue(path, `unknown channel account "${binding.account}"`);
        else if (binding.channel && account.type !== binding.channel) {
          issue(
            path,
            `channel account "${binding.account}" is ${account.type}, not ${binding.channel}`,
          );
        }
      });
      const approvals = project.approvals.channel;
      if (approvals !== undefined && isName(approvals)) {
        const account = channels[approvals];
        const path = ['project', 'approvals', 'channel'];
        if (!account) issue(path, `unknown channel account "${approvals}"`);
        else if (!account.approvals) {
          issue(path, `channel account "${approvals}" does not have approvals: true`);
        }
      }

      const flows = new Set(tenant.runtime.flows.map((f) => f.name));
      const tools = gatewayToolIndex(tenant.mcpGateway);
      /** Ceiling and context-domain checks of one tool for one (known) agent. */
      const checkTool = (agent: AgentContract, toolId: string, path: Path) => {
        const tool = tools.get(toolId);
        if (!tool) return issue(path, `unknown tool "${toolId}": no server declares it`);
        if (!riskAtMost(tool.risk, agent.safetyCeiling)) {
          issue(
            path,
            `tool "${toolId}" is ${tool.risk}, above the agent's safety ceiling "${agent.safetyCeiling}"`,
          );
        }
        if (tool.server.contextDomain !== agent.contextDomain) {
          issue(
            path,
            `tool "${toolId}" belongs to context domain "${tool.server.contextDomain}", not the agent's "${agent.contextDomain}"`,
          );
        }
      };
      for (const [name, agent] of Object.entries(agents)) {
        if (isName(agent.policy) && !(agent.policy in policies))
          issue(['agents', name, 'policy'], `unknown policy "${agent.policy}"`);
        if (isName(agent.flow) && !flows.has(agent.flow))
          issue(
            ['agents', name, 'flow'],
            `unknown flow "${agent.flow}"; runtime.flows has ${[...flows].join(', ')}`,
          );
        agent.tools.forEach((toolId, i) => {
          if (isWellFormed(ToolId, toolId)) checkTool(agent, toolId, ['agents', name, 'tools', i]);
        });
      }
      tenant.mcpGateway.grants.forEach((grant, i) => {
        mustBeAgent(grant.agent, ['mcpGateway', 'grants', i, 'agent']);
        const agent = agents[grant.agent];
        if (!agent) return;
        grant.tools.forEach((toolId, j) => {
          // An unknown or malformed tool is reported by the gateway contract itself.
          if (!tools.has(toolId)) return;
          const path = ['mcpGateway', 'grants', i, 'tools', j];
          if (!agent.tools.includes(toolId)) {
            return issue(
              path,
              `agent "${grant.agent}" does not declare tool "${toolId}" in its tools`,
            );
          }
          checkTool(agent, toolId, path);
        });
      });
      // A money budget is kept by pricing each step before it is made: a model with no price
      // would spend unseen, so it is refused here rather than counted as free.
      const projectMoney =
        project.budget?.dailyLimitUsd !== undefined ||
        project.budget?.monthlyLimitUsd !== undefined;
      for (const [name, policy] of Object.entries(policies)) {
        const money =
          projectMoney ||
          policy.budget?.perRunUsd !== undefined ||
          policy.budget?.dailyUsd !== undefined;
        if (!money) continue;
        const targets = [
          { target: policy.modelRoute.primary, path: ['modelRoute', 'primary'] as Path },
          ...policy.modelRoute.fallbacks.map((target, i) => ({
            target,
            path: ['modelRoute', 'fallbacks', i] as Path,
          })),
        ];
        for (const { target, path } of targets) {
          if (target.provider === 'echo' || policy.prices?.[target.model] !== undefined) continue;
          issue(
            ['policies', name, ...path, 'model'],
            `model "${target.model}" has no price in policies.${name}.prices, and a money budget applies (set inputUsdPerMTok and outputUsdPerMTok)`,
          );
        }
      }
      const checked = new Set(tenant.project.dataBoundary?.piiClasses ?? []);
      for (const [name, policy] of Object.entries(tenant.policies)) {
        const route = [policy.modelRoute.primary, ...policy.modelRoute.fallbacks];
        policy.privacy.piiAccess?.forEach((entry, i) => {
          const path: Path = ['policies', name, 'privacy', 'piiAccess', i];
          const matches = route.some(
            (t) => t.model === entry.model && (entry.provider ?? t.provider) === t.provider,
          );
          if (!matches) issue([...path, 'model'], `matches no model of modelRoute`);
          entry.classes.forEach((cls, j) => {
            if (!checked.has(cls)) {
              issue(
                [...path, 'classes', j],
                `"${cls}" is not in project.dataBoundary.piiClasses, so messages are never checked for it`,
              );
            }
          });
        });
      }
      refuseUnsupportedFields(tenant, issue, channelTypes);
    });
}

/**
 * The tenant file with every channel type the contracts name allowed: for code that builds a
 * tenant itself (fakes, bench, tests). `apply` reads files with {@link tenantFileSchema} over
 * the registered plugins' types.
 */
export const TenantFile = tenantFileSchema(ChannelType.options);
export type TenantFile = z.infer<typeof TenantFile>;

/** One contract body to store, as `tenantRevisions` splits a tenant file. */
export type ContractDocument = { kind: ContractKind; name: string; body: unknown };

/**
 * Splits a parsed tenant file into the contract bodies stored as revisions: one `project`,
 * one per agent, one `mcp_gateway` (`gateway`), one per policy, one `runtime`, one per
 * channel account. Bodies are the parsed values, defaults filled in, so a default that
 * changes in code shows up as a change on the next apply instead of silently.
 */
export function tenantRevisions(tenant: TenantFile): ContractDocument[] {
  const { id: _id, ...project } = tenant.project;
  return [
    { kind: 'project', name: 'project', body: project },
    ...Object.entries(tenant.agents).map(([name, body]) => ({
      kind: 'agent' as const,
      name,
      body,
    })),
    { kind: 'mcp_gateway', name: 'gateway', body: tenant.mcpGateway },
    ...Object.entries(tenant.policies).map(([name, body]) => ({
      kind: 'policy' as const,
      name,
      body,
    })),
    { kind: 'runtime', name: 'runtime', body: tenant.runtime },
    ...Object.entries(tenant.channels).map(([name, body]) => ({
      kind: 'channel' as const,
      name,
      body,
    })),
  ];
}
