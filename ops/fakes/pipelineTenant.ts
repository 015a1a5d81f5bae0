import { applyTenant, type ArtifactInput } from '../../pipeline/control/applyTenant.ts';
import { sha256Hex } from '../../pipeline/contracts/canonicalJson.ts';
import type { MigrationMode } from '../../pipeline/contracts/common.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import type { Context } from '../../pipeline/context.ts';
import type { DatabasePool } from 'slonik';

/** The secrets a pipeline test tenant refers to, by name. */
export const TEST_SECRETS = {
  'tg-token': '123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1',
  'tg-webhook': 'tg-webhook-secret-0123456789',
  'line-secret': 'line-channel-secret-abcdef',
  'line-token': 'line-access-token-0123456789abcdef',
  'model-key': 'sk-test-model-key-0123456789abcdef',
} as const;

const PROMPT = Buffer.from('You are a helpful test agent. Answer briefly.\n');

/** The Telegram account a test tenant with `approvers` asks them on (`approvals: true`). */
export const APPROVALS_ACCOUNT = 'ops';

/**
 * A tenant wired to local fakes: a Telegram account, a LINE account and an API account, one
 * agent on an OpenAI-compatible model (or echo), in the given mode. With `approvers`, also a
 * second Telegram bot account (`ops`, `approvals: true`, the same fake and secrets) named as
 * the project's approvals channel, and each approver an ACL member `telegram:<id>` with the
 * `operator` role (the default approver role). Returned parsed, as `awooop apply` would store it.
 */
export function pipelineTenant({
  projectId,
  telegramApiRoot,
  lineBaseUrl,
  modelBaseUrl,
  fallbackBaseUrl,
  mode = 'read_only',
  outputSchema,
  statusAfterMs = 60_000,
  approvers,
  apiApprovers = [],
  viewers = [],
  operators = [],
  apiOperators = [],
}: {
  projectId: string;
  telegramApiRoot: string;
  lineBaseUrl: string;
  modelBaseUrl?: string;
  fallbackBaseUrl?: string;
  mode?: MigrationMode;
  outputSchema?: object;
  statusAfterMs?: number;
  /** Telegram user ids that may decide approvals (ACL `telegram:<id>`, role `approver`). */
  approvers?: readonly string[];
  /** API key ids that may decide approvals (ACL `api:<key id>`, role `approver`). */
  apiApprovers?: readonly string[];
  /** Telegram user ids in the ACL with the `viewer` role only (not approvers). */
  viewers?: readonly string[];
  /** Telegram user ids in the ACL with the `operator` role only, which decides nothing. */
  operators?: readonly string[];
  /** API key ids in the ACL with the `operator` role only. */
  apiOperators?: readonly string[];
}): { tenant: TenantFile; artifacts: ArtifactInput[] } {
  const artifacts: ArtifactInput[] = [
    { ref: 'prompts/agent.md', kind: 'prompt', mediaType: 'text/markdown', content: PROMPT },
  ];
  const schemaBytes = outputSchema ? Buffer.from(JSON.stringify(outputSchema)) : null;
  if (schemaBytes)
    artifacts.push({
      ref: 'schemas/out.json',
      kind: 'json_schema',
      mediaType: 'application/schema+json',
      content: schemaBytes,
    });
  const model = (baseUrl: string | undefined) =>
    baseUrl
      ? {
          provider: 'openai_compatible',
          model: 'test-model',
          baseUrl,
          apiKey: 'secret:model-key',
          // generous: a loaded machine answers slowly; no test relies on this timing out
          timeoutMs: 60_000,
        }
      : { provider: 'echo' };
  const progress = { statusAfterMs, statusText: 'Working on it' };
  const tenant = TenantFile.parse({
    apiVersion: 'awooop/v1',
    project: {
      id: projectId,
      displayName: `Test ${projectId}`,
      acl: {
        members: [
          { subject: 'email:owner@example.test', roles: ['admin'] },
          ...(approvers ?? []).map((id) => ({ subject: `telegram:${id}`, roles: ['approver'] })),
          ...apiApprovers.map((id) => ({ subject: `api:${id}`, roles: ['approver'] })),
          ...viewers.map((id) => ({ subject: `telegram:${id}`, roles: ['viewer'] })),
          ...operators.map((id) => ({ subject: `telegram:${id}`, roles: ['operator'] })),
          ...apiOperators.map((id) => ({ subject: `api:${id}`, roles: ['operator'] })),
        ],
      },
      ...(approvers ? { approvals: { channel: APPROVALS_ACCOUNT } } : {}),
      defaultAgent: 'helper',
    },
    agents: {
      helper: {
        description: 'Test agent',
        capabilityVersion: '1.0.0',
        prompt: { ref: 'prompts/agent.md', sha256: sha256Hex(PROMPT) },
        ...(schemaBytes
          ? { outputSchema: { ref: 'schemas/out.json', sha256: sha256Hex(schemaBytes) } }
          : {}),
        contextDomain: 'general',
        safetyCeiling: 'read',
      },
    },
    mcpGateway: { servers: [], grants: [] },
    policies: {
      default: {
        modelRoute: {
          primary: model(modelBaseUrl),
          fallbacks: fallbackBaseUrl ? [model(fallbackBaseUrl)] : [],
        },
        rate: { perPeerPerMinute: 1000, perProjectPerMinute: 10_000 },
      },
    },
    runtime: {
      flows: [
        {
          name: 'default',
          mode,
          ...(mode === 'canary' ? { canary: { percent: 0, allowPeers: [] } } : {}),
        },
      ],
      timeouts: { runMs: 120_000 },
    },
    channels: {
      tg: {
        type: 'telegram',
        botToken: 'secret:tg-token',
        webhookSecret: 'secret:tg-webhook',
        apiRoot: telegramApiRoot,
        parseMode: 'HTML',
        progress,
      },
      ln: {
        type: 'line',
        channelSecret: 'secret:line-secret',
        channelAccessToken: 'secret:line-token',
        apiBaseUrl: lineBaseUrl,
        progress,
      },
      api: { type: 'api' },
      ...(approvers
        ? {
            [APPROVALS_ACCOUNT]: {
              type: 'telegram',
              botToken: 'secret:tg-token',
              webhookSecret: 'secret:tg-webhook',
              apiRoot: telegramApiRoot,
              parseMode: 'plain',
              approvals: true,
            },
          }
        : {}),
    },
  });
  return { tenant, artifacts };
}

/** Applies a test tenant as `awooop apply` does, with `envSecrets` as AWOOOP_ENV_SECRETS. */
export async function applyTestTenant(
  ctx: Context,
  input: ReturnType<typeof pipelineTenant>,
  envSecrets: readonly string[] = [],
) {
  return applyTenant(ctx, { ...input, actor: 'test', envSecrets });
}

/**
 * What most pipeline tests start with: applies the test tenant of `options.projectId` (its
 * channels and model at the given fakes) and stores {@link TEST_SECRETS} for it.
 */
export async function setUpTestTenant(
  pipeline: {
    ctx: Pick<Context, 'logger'>;
    /** Stores one secret for a project (a test pipeline's `setSecret`). */
    setSecret(projectId: string, name: string, value: string): Promise<void>;
  },
  pool: DatabasePool,
  options: Parameters<typeof pipelineTenant>[0],
): Promise<void> {
  await applyTestTenant({ pool, logger: pipeline.ctx.logger }, pipelineTenant(options));
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(options.projectId, name, value);
}
