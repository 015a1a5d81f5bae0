import pg from 'pg';
import { pino } from 'pino';
import type { DatabasePool } from 'slonik';
import { createApiKey } from '../../db/apiKeys.ts';
import { createDbPool } from '../../db/createDbPool.ts';
import { ensureDatabase, migrate } from '../../db/migrate.ts';
import { putSecret } from '../../db/secrets.ts';
import { sealSecret, secretAad } from '../../pipeline/secrets/secretBox.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import { DISCORD_APP_ID } from '../fakes/discordPayloads.ts';
import { withProject } from '../../db/withProject.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../fakes/pipelineTenant.ts';

/** The project every chaos run talks to. */
export const CHAOS_PROJECT = 'chaos';

/** The chaos project's Slack account and the credentials the fake Slack Web API expects. */
const SLACK = {
  account: 'sl',
  signingSecret: 'chaos-slack-signing-secret-0123456789',
  botToken: 'xoxb-chaos-0000000000-0000000000000-abcdefghijklmnopqrstuvwx',
};
export const SLACK_BOT_TOKEN = SLACK.botToken;

/** The chaos project's Discord account: its bot token, as the fake Gateway and REST API expect. */
export const DISCORD_BOT_TOKEN = 'MTEwMDAwMDAwMDAwMDAwMDAwMQ.chaos.discord-bot-token-0123456789';

/** A migrated chaos database with its tenant applied. */
export type ChaosDatabase = {
  /** DATABASE_URL for the platform's processes. */
  url: string;
  /** A pool (tenant role) for the harness's own reads; `withProject` shows the chaos rows. */
  pool: DatabasePool;
  /** A client API key of the chaos project. */
  apiKey: string;
  /** The Telegram webhook secret the tenant expects. */
  webhookSecret: string;
  /** The Slack account's name and signing secret. */
  slack: { account: string; signingSecret: string };
};

/** The server of `DATABASE_URL` (or the local default), with another database in the path. */
export function databaseUrl(database: string): string {
  const url = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  url.pathname = `/${database}`;
  url.search = '';
  return url.toString();
}

/** Drops the database (with its connections) if it exists. */
export async function dropDatabase(database: string): Promise<void> {
  const admin = new pg.Client({ connectionString: databaseUrl('postgres') });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/**
 * Creates `database` fresh (dropping any earlier one of that name), migrates it, and applies
 * the chaos tenant: a Telegram account talking to `telegramApiRoot`, a Slack account talking
 * to `slackApiBaseUrl`, a Discord account on `discord` (its Gateway and REST API), an API
 * account, the echo
 * model, in `read_only` mode (live: every run answers). Secrets are sealed with `secretKey`,
 * the AWOOOP_SECRET_KEY the platform's processes get.
 */
export async function prepareChaosDatabase({
  database,
  telegramApiRoot,
  slackApiBaseUrl,
  discord,
  secretKey,
}: {
  database: string;
  telegramApiRoot: string;
  slackApiBaseUrl: string;
  discord: { apiBaseUrl: string; gatewayUrl: string };
  secretKey: Buffer;
}): Promise<ChaosDatabase> {
  const url = databaseUrl(database);
  await dropDatabase(database);
  await ensureDatabase(url);
  await migrate(url);
  const pool = await createDbPool(url, { maxPoolSize: 4, applicationName: 'awooop-chaos' });
  const logger = pino({ level: 'silent' });
  const input = pipelineTenant({
    projectId: CHAOS_PROJECT,
    telegramApiRoot,
    // No LINE traffic is sent; the tenant file only needs a URL for the account.
    lineBaseUrl: 'http://127.0.0.1:9',
    mode: 'read_only',
    // A status note would be a second message in the chat: never within a run here.
    statusAfterMs: 600_000,
  });
  input.tenant.channels[SLACK.account] = ChannelContract.parse({
    type: 'slack',
    signingSecret: 'secret:slack-signing',
    botToken: 'secret:slack-bot',
    apiBaseUrl: slackApiBaseUrl,
    progress: { statusAfterMs: 600_000 },
  });
  input.tenant.channels.dc = ChannelContract.parse({
    type: 'discord',
    botToken: 'secret:discord-bot',
    applicationId: DISCORD_APP_ID,
    // Interactions are not sent by the chaos load: any well-formed key will do.
    publicKey: 'ab'.repeat(32),
    apiBaseUrl: discord.apiBaseUrl,
    gatewayUrl: discord.gatewayUrl,
    progress: { statusAfterMs: 600_000 },
  });
  await applyTestTenant({ pool, logger }, input);
  const secrets = {
    ...TEST_SECRETS,
    'slack-signing': SLACK.signingSecret,
    'slack-bot': SLACK.botToken,
    'discord-bot': DISCORD_BOT_TOKEN,
  };
  for (const [name, value] of Object.entries(secrets)) {
    await withProject(pool, CHAOS_PROJECT, (tx) =>
      putSecret(tx, {
        projectId: CHAOS_PROJECT,
        name,
        sealed: sealSecret(secretKey, value, secretAad(CHAOS_PROJECT, name)),
        actor: 'chaos',
      }),
    );
  }
  const { key } = await withProject(pool, CHAOS_PROJECT, (tx) =>
    createApiKey(tx, {
      projectId: CHAOS_PROJECT,
      name: 'chaos',
      roles: ['client'],
      actor: 'chaos',
    }),
  );
  return {
    url,
    pool,
    apiKey: key,
    webhookSecret: TEST_SECRETS['tg-webhook'],
    slack: { account: SLACK.account, signingSecret: SLACK.signingSecret },
  };
}
