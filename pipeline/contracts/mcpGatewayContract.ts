import { z } from 'zod';
import {
  HttpUrl,
  Identifier,
  isWellFormed,
  reportDuplicates,
  RiskClass,
  SecretRef,
  ToolId,
} from './common.ts';

const ToolName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '-' or '_'");

/** One tool a server offers, with the governance the gateway applies to it. */
export const GatewayTool = z.strictObject({
  name: ToolName,
  risk: RiskClass,
  timeoutMs: z.int().min(100).max(600_000).default(30_000),
  result: z
    .strictObject({
      maxBytes: z.int().min(256).max(10_485_760).default(65_536),
      redact: z.boolean().default(true),
    })
    .prefault({}),
});

const Transport = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('stdio'),
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'),
        SecretRef,
      )
      .default({}),
  }),
  z.strictObject({
    type: z.literal('streamable_http'),
    url: HttpUrl,
    headers: z
      .record(z.string().regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name'), SecretRef)
      .default({}),
    sseFallback: z.boolean().default(true),
  }),
]);

/** One MCP server behind the gateway. */
export const GatewayServer = z.strictObject({
  name: Identifier,
  contextDomain: Identifier,
  environment: Identifier,
  transport: Transport,
  tools: z.array(GatewayTool).min(1, 'a server needs at least one tool'),
  /**
   * How many of the project's runs may call (or connect to) this server at once; a run that
   * finds them all busy waits in the queue, holding no worker. The platform's share per
   * dependency (`AWOOOP_BULKHEAD_DEPENDENCY_SLOTS`) when absent.
   */
  maxConcurrency: z.int().min(1).max(256).optional(),
});
export type GatewayServer = z.infer<typeof GatewayServer>;

/** Which agent may call which tools, in which environments. */
export const Grant = z.strictObject({
  agent: Identifier,
  tools: z.array(ToolId).min(1, 'a grant needs at least one tool'),
  environments: z.array(Identifier).min(1, 'a grant needs at least one environment'),
  requireApproval: z.boolean().default(false),
});
export type Grant = z.infer<typeof Grant>;

/** MCP Gateway: servers, their tools with risk classes, and the grants. */
export const McpGatewayContract = z
  .strictObject({
    servers: z.array(GatewayServer).default([]),
    grants: z.array(Grant).default([]),
  })
  .superRefine((gateway, ctx) => {
    reportDuplicates(
      ctx,
      gateway.servers.map((server) => server.name),
      (i) => ['servers', i, 'name'],
      (name) => `duplicate server "${name}"`,
    );
    gateway.servers.forEach((server, i) =>
      reportDuplicates(
        ctx,
        server.tools.map((tool) => tool.name),
        (j) => ['servers', i, 'tools', j, 'name'],
        (name) => `duplicate tool "${name}" on server "${server.name}"`,
      ),
    );
    const index = gatewayToolIndex(gateway);
    gateway.grants.forEach((grant, i) => {
      grant.tools.forEach((toolId, j) => {
        if (!isWellFormed(ToolId, toolId)) return; // reported at its own field
        const found = index.get(toolId);
        if (!found) {
          ctx.addIssue({
            code: 'custom',
            path: ['grants', i, 'tools', j],
            message: `unknown tool "${toolId}": no server declares it`,
          });
          return;
        }
        grant.environments.forEach((env, k) => {
          if (env !== found.server.environment) {
            ctx.addIssue({
              code: 'custom',
              path: ['grants', i, 'environments', k],
              message: `tool "${toolId}" runs in environment "${found.server.environment}", not "${env}"`,
            });
          }
        });
      });
    });
  });
export type McpGatewayContract = z.infer<typeof McpGatewayContract>;

/** Every tool of a gateway by `<server>.<tool>`, with its server. */
export function gatewayToolIndex(gateway: {
  servers: readonly {
    name: string;
    contextDomain: string;
    environment: string;
    tools: readonly { name: string; risk: RiskClass }[];
  }[];
}) {
  const index = new Map<string, { server: (typeof gateway.servers)[number]; risk: RiskClass }>();
  for (const server of gateway.servers) {
    for (const tool of server.tools)
      index.set(`${server.name}.${tool.name}`, { server, risk: tool.risk });
  }
  return index;
}
