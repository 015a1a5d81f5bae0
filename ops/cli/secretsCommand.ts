import { appendAudit } from '../../db/auditEvents.ts';
import { deleteSecret, listSecretNames, putSecret } from '../../db/secrets.ts';
import { sealSecret, secretAad } from '../../pipeline/secrets/secretBox.ts';
import { withProject } from '../../db/withProject.ts';
import { secretKeyBytes } from '../loadConfig.ts';
import type { CliContext } from './CliContext.ts';
import { parseCommandArgs, requireProject } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop secrets set NAME --project P [--from-env VAR]   value from the env variable VAR, else from stdin
  awooop secrets list --project P                        names only, never values
  awooop secrets rm NAME --project P`;

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

/** `awooop secrets set|list|rm`: the values `secret:NAME` refs resolve to, sealed with AWOOOP_SECRET_KEY. */
export async function secretsCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    'from-env': { type: 'string' },
  });
  if (sub !== 'set' && sub !== 'list' && sub !== 'rm') throw new UsageError(USAGE);
  const projectId = requireProject(values.project);
  const name = positionals[0];
  if (sub !== 'list' && (!name || !NAME.test(name))) {
    throw new UsageError(
      `NAME: expected a secret name like telegram-bot-token, got ${JSON.stringify(name ?? '')}`,
    );
  }
  const { pool } = await ctx.connect();
  switch (sub) {
    case 'set': {
      const key = secretKeyBytes(ctx.config);
      if (!key)
        throw new UsageError(
          'AWOOOP_SECRET_KEY: must be set to store secrets (32 bytes, hex or base64)',
        );
      const fromEnv = values['from-env'];
      const value = fromEnv ? process.env[fromEnv] : await readStdin();
      if (!value)
        throw new UsageError(
          fromEnv
            ? `--from-env: ${fromEnv} is empty or unset`
            : 'value: pipe the secret on stdin or use --from-env VAR',
        );
      await withProject(pool, projectId, async (tx) => {
        await putSecret(tx, {
          projectId,
          name: name!,
          sealed: sealSecret(key, value, secretAad(projectId, name!)),
          actor: ctx.actor,
        });
        await appendAudit(tx, {
          projectId,
          chain: `secret:${name}`,
          actor: ctx.actor,
          action: 'secret.set',
          subject: `secret:${name}`,
        });
      });
      ctx.print(`stored secret ${name} for ${projectId}`);
      return 0;
    }
    case 'list': {
      const rows = await withProject(pool, projectId, (tx) => listSecretNames(tx, projectId));
      for (const r of rows)
        ctx.print(`${r.name}  (key ${r.keyId}, updated ${new Date(r.updatedAt).toISOString()})`);
      if (rows.length === 0) ctx.print(`no secrets for ${projectId}`);
      return 0;
    }
    case 'rm': {
      const removed = await withProject(pool, projectId, async (tx) => {
        const done = await deleteSecret(tx, projectId, name!);
        if (done)
          await appendAudit(tx, {
            projectId,
            chain: `secret:${name}`,
            actor: ctx.actor,
            action: 'secret.removed',
            subject: `secret:${name}`,
          });
        return done;
      });
      ctx.print(removed ? `removed secret ${name}` : `no secret ${name} in ${projectId}`);
      return removed ? 0 : 1;
    }
  }
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}
