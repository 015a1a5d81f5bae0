import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { createApiKey } from '../../db/apiKeys.ts';
import { createDbPool } from '../../db/createDbPool.ts';
import { putSecret } from '../../db/secrets.ts';
import { sealSecret, secretAad } from '../../pipeline/secrets/secretBox.ts';
import { withProject } from '../../db/withProject.ts';
import { sha256Hex } from '../../pipeline/contracts/canonicalJson.ts';
import type { ProjectLimits } from '../../pipeline/contracts/projectContract.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { applyTenant } from '../../pipeline/control/applyTenant.ts';

/** The project every bench run belongs to. */
export const BENCH_PROJECT = 'bench';
/** The project's API channel account. */
export const BENCH_API_ACCOUNT = 'api';
/** The project's Telegram account, for the webhook bench. */
export const BENCH_TELEGRAM_ACCOUNT = 'tg';

/** What a bench needs to talk to the applied tenant. */
export type BenchTenant = {
  projectId: string;
  /** A `client` API key of the project. */
  apiKey: string;
  /** The Telegram account's webhook secret (`X-Telegram-Bot-Api-Secret-Token`). */
  webhookSecret: string;
  /** The key the project's secrets are sealed with: `AWOOOP_SECRET_KEY` of every process. */
  secretKeyHex: string;
};

const PROMPT = Buffer.from('You are the bench agent. Answer briefly.\n');

/**
 * The bench tenant: one agent on the zero-latency `echo` model, an API channel account (no
 * callback: deliver stores the answer) and a Telegram account for the webhook bench, with rate
 * gates far above anything a bench sends, so no run is refused for its rate.
 */
function benchTenantFile(projectId: string, limits: ProjectLimits | undefined): TenantFile {
  return TenantFile.parse({
    apiVersion: 'awooop/v1',
    project: {
      id: projectId,
      displayName: 'Benchmark',
      ...(limits ? { limits } : {}),
      acl: { members: [{ subject: 'email:bench@example.test', roles: ['admin'] }] },
      defaultAgent: 'helper',
    },
    agents: {
      helper: {
        description: 'Bench agent',
        capabilityVersion: '1.0.0',
        prompt: { ref: 'prompts/agent.md', sha256: sha256Hex(PROMPT) },
        contextDomain: 'general',
        safetyCeiling: 'read',
      },
    },
    mcpGateway: { servers: [], grants: [] },
    policies: {
      default: {
        modelRoute: { primary: { provider: 'echo' }, fallbacks: [] },
        rate: { perPeerPerMinute: 1_000_000, perProjectPerMinute: 100_000_000 },
      },
    },
    runtime: { flows: [{ name: 'default', mode: 'read_only' }], timeouts: { runMs: 600_000 } },
    channels: {
      [BENCH_API_ACCOUNT]: { type: 'api' },
      [BENCH_TELEGRAM_ACCOUNT]: {
        type: 'telegram',
        botToken: 'secret:tg-token',
        webhookSecret: 'secret:tg-webhook',
        // Nothing listens there: the webhook bench runs no workers, so nothing is ever sent.
        apiRoot: 'http://127.0.0.1:9',
        parseMode: 'HTML',
      },
    },
  });
}

/**
 * Applies the bench tenant as `awooop apply` would, seals its Telegram secrets and creates a
 * client API key, all through the platform's own functions.
 */
export async function applyBenchTenant(
  databaseUrl: string,
  {
    projectId = BENCH_PROJECT,
    limits,
    secretKey = randomBytes(32),
  }: {
    /** @defaultValue {@link BENCH_PROJECT} */
    projectId?: string;
    /** The project contract's admission limits; absent: none. */
    limits?: ProjectLimits;
    /** What the secrets are sealed with: the same for every tenant of one platform. */
    secretKey?: Buffer;
  } = {},
): Promise<BenchTenant> {
  const pool = await createDbPool(databaseUrl, { applicationName: 'awooop-bench', maxPoolSize: 2 });
  const webhookSecret = `bench-webhook-${randomBytes(12).toString('hex')}`;
  try {
    await applyTenant(
      { pool, logger: pino({ level: 'silent' }) },
      {
        tenant: benchTenantFile(projectId, limits),
        artifacts: [
          { ref: 'prompts/agent.md', kind: 'prompt', mediaType: 'text/markdown', content: PROMPT },
        ],
        actor: 'bench',
      },
    );
    const secrets = {
      'tg-token': '123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1',
      'tg-webhook': webhookSecret,
    };
    const { key } = await withProject(pool, projectId, async (tx) => {
      for (const [name, value] of Object.entries(secrets))
        await putSecret(tx, {
          projectId,
          name,
          sealed: sealSecret(secretKey, value, secretAad(projectId, name)),
          actor: 'bench',
        });
      return createApiKey(tx, {
        projectId,
        name: 'bench',
        roles: ['client'],
        actor: 'bench',
      });
    });
    return {
      projectId,
      apiKey: key,
      webhookSecret,
      secretKeyHex: secretKey.toString('hex'),
    };
  } finally {
    await pool.end();
  }
}
