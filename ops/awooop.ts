#!/usr/bin/env node
// The `awooop` command: the control plane's CLI and the entry point of every process type.
import { readFile } from 'node:fs/promises';
import { ensureDatabase, migrate } from '../db/migrate.ts';
import { sha256Hex } from '../pipeline/contracts/canonicalJson.ts';
import { AppError, ContractViolationError } from '../pipeline/errors.ts';
import { applyCommand } from './cli/applyCommand.ts';
import { approvalsCommand } from './cli/approvalsCommand.ts';
import { auditCommand } from './cli/auditCommand.ts';
import { authorizeCommand } from './cli/authorizeCommand.ts';
import { createCliContext, type CliContext } from './cli/CliContext.ts';
import { channelsCommand } from './cli/channelsCommand.ts';
import { contractsCommand } from './cli/contractsCommand.ts';
import { jobsCommand } from './cli/jobsCommand.ts';
import { keysCommand } from './cli/keysCommand.ts';
import { providersCommand } from './cli/providersCommand.ts';
import { runsCommand } from './cli/runsCommand.ts';
import { secretsCommand } from './cli/secretsCommand.ts';
import { usageCommand } from './cli/usageCommand.ts';
import { UsageError } from './cli/UsageError.ts';
import { embeddedUrl, EMBEDDED_DATA_FOLDER, runningEmbeddedPort } from './embeddedPostgres.ts';
import { ConfigError, loadConfig, ownerUrl } from './loadConfig.ts';

const USAGE = `awooop — multi-tenant agent platform

usage: awooop [--actor WHO | --key KEY] <command> ...

    Without a key the CLI is the platform operator (it holds the platform's database
    login) and may run every command. --key KEY (or AWOOOP_API_KEY) acts as a project API
    key instead: only the commands its roles grant, in its project (README: Roles).

  migrate                      create the database if needed and apply pending migrations
  apply -f FILE [--dry-run]    validate a tenant YAML file, then draft, publish and activate what changed
  contracts list|show|diff|activate|rollback ...
  audit verify|checkpoint ...
  runs list|show|retry ...      runs and their timelines; a failed run again
  approvals list|approve|reject tool calls waiting for a human's decision
  usage --project P [--by ...]  spend: tokens, USD, tool calls, runs (today, this month, a range)
  jobs failed|retry|inspect ... failed stage jobs
  keys create|list|revoke ...   API keys of a project
  providers list|add|open|close|reset ...   model provider endpoints and their circuit breakers (platform)
  secrets set|list|rm ...       encrypted channel and provider credentials of a project
  hash FILE...                 print the SHA-256 of files (for prompt and schema refs)
  web                          run the HTTP process (webhooks, API, /admin/queues, /metrics, health)
  worker STAGE|all             run a stage worker (resolve, policy, execute, sanitize, deliver)
  sweeper                      re-enqueue runs whose job was lost; end runs past their deadline
  channels                     run the ChannelManager (account snapshots, registrations, held connections)
  channels status|start|stop|restart --project P [--account A]   channel accounts and their state
  dev                          migrate, then run every Procfile process under one supervisor
                               (no DATABASE_URL: first starts an embedded Postgres in .awooop/postgres)

environment: see README (DATABASE_URL (unset: the embedded Postgres of dev), REDIS_URL, PORT, HOST, LOG_LEVEL, AWOOOP_* ...)`;

type Command = (ctx: CliContext, args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  migrate: async (ctx) => {
    const url = ownerUrl(ctx.config);
    if (await ensureDatabase(url)) ctx.print('created the database');
    const result = await migrate(url, { log: (line) => ctx.print(line) });
    ctx.print(
      result.applied.length
        ? `migrated to ${result.current}`
        : `database is current (migration ${result.current})`,
    );
    return 0;
  },
  apply: applyCommand,
  contracts: contractsCommand,
  audit: auditCommand,
  runs: runsCommand,
  approvals: approvalsCommand,
  usage: usageCommand,
  jobs: jobsCommand,
  keys: keysCommand,
  providers: providersCommand,
  secrets: secretsCommand,
  hash: async (ctx, files) => {
    if (files.length === 0) throw new UsageError('hash: name at least one FILE');
    for (const file of files) ctx.print(`${sha256Hex(await readFile(file))}  ${file}`);
    return 0;
  },
  web: async (ctx) => {
    const { runWeb } = await import('./runWeb.ts');
    return runWeb(ctx.config);
  },
  worker: async (ctx, [stage]) => {
    const { parseStages, runWorker } = await import('./runWorker.ts');
    const stages = parseStages(stage);
    if (!stages)
      throw new UsageError(
        `worker: expected a stage (resolve, policy, execute, sanitize, deliver) or all, got ${JSON.stringify(stage ?? '')}`,
      );
    return runWorker(ctx.config, stages);
  },
  channels: async (ctx, args) => {
    if (args.length === 0) {
      const { runChannels } = await import('./runChannels.ts');
      return runChannels(ctx.config);
    }
    return channelsCommand(ctx, args);
  },
  sweeper: async (ctx) => {
    const { runSweeper } = await import('./runSweeper.ts');
    return runSweeper(ctx.config);
  },
  dev: async (ctx) => {
    const { runDev } = await import('./runDev.ts');
    return runDev(ctx.config);
  },
};

async function main(argv: string[]): Promise<number> {
  let args = argv;
  let actor: string | undefined;
  let key: string | undefined;
  while (args[0] === '--actor' || args[0] === '--key') {
    const value = args[1];
    if (!value) throw new UsageError(`${args[0]}: needs a value`);
    if (args[0] === '--actor') actor = value;
    else key = value;
    args = args.slice(2);
  }
  const [name, ...rest] = args;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command "${name}"\n\n${USAGE}`);
  // No DATABASE_URL: the embedded server `npm start` runs, found from its data folder. With
  // none running, `dev` starts one and every other command that needs the database refuses
  // (ownerUrl): a server started by a single command would outlive it or die with it, under
  // the processes that share it.
  if (!process.env.DATABASE_URL && name !== 'dev') {
    const port = runningEmbeddedPort(EMBEDDED_DATA_FOLDER);
    if (port !== undefined) process.env.DATABASE_URL = embeddedUrl(port, 'awooop');
  }
  const config = loadConfig();
  key ??= config.AWOOOP_API_KEY;
  if (key !== undefined && actor !== undefined)
    throw new UsageError('--actor: not with a key (a key acts as api:<key id>)');
  const ctx = createCliContext(config, actor);
  try {
    // The permission table, before anything else: a refused command changes nothing.
    return await command(await authorizeCommand(ctx, name, rest, key), rest);
  } finally {
    await ctx.close();
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`awooop: ${error.message}\n`);
    process.exitCode = 2;
  } else if (error instanceof ConfigError) {
    process.stderr.write(`awooop: ${error.message}\n`);
    process.exitCode = 2;
  } else if (error instanceof ContractViolationError) {
    process.stderr.write(
      `awooop: invalid — nothing was written:\n${error.issues.map((i) => `  ${i}`).join('\n')}\n`,
    );
    process.exitCode = 1;
  } else if (error instanceof AppError) {
    process.stderr.write(`awooop: ${error.code}: ${error.message}\n`);
    process.exitCode = 1;
  } else {
    // an unexpected failure (database unreachable, a bug): the message, and the stack on request
    const detail = process.env.LOG_LEVEL === 'debug' || process.env.LOG_LEVEL === 'trace';
    const text =
      error instanceof Error
        ? detail
          ? (error.stack ?? error.message)
          : error.message
        : String(error);
    process.stderr.write(`awooop: ${text}${detail ? '' : ' (LOG_LEVEL=debug shows the stack)'}\n`);
    process.exitCode = 1;
  }
}
