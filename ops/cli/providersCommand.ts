import {
  findProviderEndpoint,
  findProviderEndpointById,
  listProviderEndpoints,
  moveProviderBreaker,
  registerProviderEndpoint,
  type BreakerMove,
  type ProviderEndpoint,
} from '../../db/providerEndpoints.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { endpointOf } from '../../pipeline/providerHealth/endpointOf.ts';
import { HttpUrl, isWellFormed } from '../../pipeline/contracts/common.ts';
import type { AuditAction } from '../../pipeline/contracts/auditActions.ts';
import type { CliContext } from './CliContext.ts';
import { parseCommandArgs } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop providers [list] [--json]                     every provider endpoint and its circuit breaker
  awooop providers add PROVIDER BASE_URL --reason TEXT    register an endpoint (with AWOOOP_PROVIDER_REGISTRATION=operator, only registered ones are called)
  awooop providers open ENDPOINT --reason TEXT [--json]    hold its breaker open (routes skip it) until closed or reset
  awooop providers close ENDPOINT --reason TEXT [--json]   close its breaker (new failures can open it again)
  awooop providers reset ENDPOINT --reason TEXT [--json]   close it and clear its failure and open counts
  ENDPOINT is the id \`providers list\` shows`;

type Change = { action: AuditAction; to: BreakerMove } | null;

/** What each operator command makes of a row; null when the row is that already. */
const CHANGES: Record<'open' | 'close' | 'reset', (row: ProviderEndpoint) => Change> = {
  open: (row) =>
    row.forced
      ? null
      : {
          action: 'provider.breaker.opened',
          to: {
            state: 'open',
            forced: true,
            failures: row.failures,
            lastError: row.lastError,
            openedCount: row.state === 'open' ? 'keep' : 'bump',
          },
        },
  close: (row) =>
    row.state === 'closed'
      ? null
      : {
          action: 'provider.breaker.closed',
          to: {
            state: 'closed',
            forced: false,
            failures: 0,
            lastError: row.lastError,
            openedCount: 'keep',
          },
        },
  reset: (row) =>
    row.state === 'closed' && row.failures === 0 && row.lastError === null && row.openedCount === 0
      ? null
      : {
          action: 'provider.breaker.reset',
          to: {
            state: 'closed',
            forced: false,
            failures: 0,
            lastError: null,
            openedCount: 'reset',
          },
        },
};

/**
 * `awooop providers list|open|close|reset`: the provider endpoints (platform resources) and
 * their breakers, and an operator's hold, close or reset of one. Each runs under
 * `withPlatform` (so it is audited as a platform access) and each change writes its own
 * audit row on the endpoint's chain with the CLI's actor and the reason given; runtime
 * processes see it within their cache's refresh (a second).
 */
export async function providersCommand(ctx: CliContext, args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    reason: { type: 'string' },
    json: { type: 'boolean' },
  });
  const [sub = 'list', endpointArg, ...extra] = positionals;
  if (sub === 'add') return addEndpoint(ctx, positionals.slice(1), values.reason, values.json);
  if (sub !== 'list' && sub !== 'open' && sub !== 'close' && sub !== 'reset')
    throw new UsageError(`providers: unknown subcommand ${JSON.stringify(sub)}\n\n${USAGE}`);

  if (sub === 'list') {
    if (endpointArg !== undefined)
      throw new UsageError(`list: unexpected argument ${JSON.stringify(endpointArg)}`);
    const { pool } = await ctx.connect();
    const rows = await withPlatform(
      pool,
      { actor: ctx.actor, reason: 'providers list' },
      listProviderEndpoints,
    );
    if (values.json) ctx.print(JSON.stringify(rows.map(view), null, 2));
    else if (rows.length === 0)
      ctx.print('no provider endpoints yet (a route registers one on its first call)');
    else for (const row of rows) ctx.print(line(row));
    return 0;
  }

  if (endpointArg === undefined || !/^[1-9]\d{0,15}$/.test(endpointArg))
    throw new UsageError(
      `ENDPOINT: expected the id of a provider endpoint (see awooop providers list), got ${JSON.stringify(endpointArg ?? '')}`,
    );
  if (extra.length > 0)
    throw new UsageError(`${sub}: unexpected argument ${JSON.stringify(extra[0])}`);
  const reason = requireReason(sub, values.reason);
  const endpointId = Number(endpointArg);

  const { pool } = await ctx.connect();
  const result = await withPlatform(
    pool,
    { actor: ctx.actor, reason: `providers ${sub} ${endpointId}: ${reason}` },
    async (tx) => {
      // The row is locked, so the version it moves from is the one read here; a second
      // identical command finds the row already so and changes nothing.
      const row = await findProviderEndpointById(tx, endpointId, { lock: true });
      if (!row) throw new UsageError(`ENDPOINT: no provider endpoint ${endpointId}`);
      const change = CHANGES[sub](row);
      if (!change) return { changed: false, before: row, after: row };
      const after = await moveProviderBreaker(tx, row, change.to, {
        actor: ctx.actor,
        action: change.action,
        cooldownMs: 0,
        detail: { from: row.state, reason, operator: sub, failures: change.to.failures },
      });
      if (!after) throw new Error(`provider endpoint ${endpointId} moved while locked`);
      return { changed: true, before: row, after };
    },
  );
  if (values.json)
    ctx.print(JSON.stringify({ changed: result.changed, endpoint: view(result.after) }, null, 2));
  else
    ctx.print(
      result.changed
        ? `${endpointId} ${result.after.provider} ${result.after.baseUrl}: ${label(result.before)} → ${label(result.after)}`
        : `${endpointId} ${result.after.provider} ${result.after.baseUrl} is already ${label(result.after)}: nothing changed`,
    );
  return 0;
}

/** The reason an operator gave, required for every change. */
function requireReason(sub: string, value: string | undefined): string {
  const reason = value?.trim();
  if (!reason) throw new UsageError(`--reason: required for ${sub} (it goes into the audit trail)`);
  if (reason.length > 500) throw new UsageError('--reason: at most 500 characters');
  return reason;
}

/** `providers add PROVIDER BASE_URL`: registers an endpoint as the platform's own resource. */
async function addEndpoint(
  ctx: CliContext,
  [provider, baseUrl, ...extra]: string[],
  reasonValue: string | undefined,
  json: boolean | undefined,
): Promise<number> {
  if (provider !== 'openai_compatible' && provider !== 'anthropic')
    throw new UsageError(
      `PROVIDER: expected openai_compatible or anthropic, got ${JSON.stringify(provider ?? '')}`,
    );
  if (baseUrl === undefined || !isWellFormed(HttpUrl, baseUrl))
    throw new UsageError(
      `BASE_URL: expected an http:// or https:// URL, got ${JSON.stringify(baseUrl ?? '')}`,
    );
  if (extra.length > 0)
    throw new UsageError(`add: unexpected argument ${JSON.stringify(extra[0])}`);
  const reason = requireReason('add', reasonValue);
  // The same key as a route's call uses (trailing slashes dropped).
  const key = endpointOf({ provider, baseUrl })!;
  const { pool } = await ctx.connect();
  const { added, row } = await withPlatform(
    pool,
    { actor: ctx.actor, reason: `providers add ${key.provider} ${key.baseUrl}: ${reason}` },
    async (tx) => {
      // A second add finds the unique (provider, base URL) key taken and writes nothing.
      const added = await registerProviderEndpoint(tx, { ...key, actor: ctx.actor, reason });
      return { added: added !== null, row: added ?? (await findProviderEndpoint(tx, key))! };
    },
  );
  if (json) ctx.print(JSON.stringify({ changed: added, endpoint: view(row) }, null, 2));
  else
    ctx.print(
      added
        ? `${row.endpointId} ${row.provider} ${row.baseUrl}: registered (closed)`
        : `${row.endpointId} ${row.provider} ${row.baseUrl} is already registered: nothing changed`,
    );
  return 0;
}

function label(row: ProviderEndpoint): string {
  return row.forced ? 'open (held)' : row.state.replace('_', '-');
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function view(row: ProviderEndpoint) {
  return {
    id: row.endpointId,
    provider: row.provider,
    baseUrl: row.baseUrl,
    state: row.state,
    heldByOperator: row.forced,
    since: iso(row.stateSince),
    retryAt: iso(row.retryAt),
    failures: row.failures,
    lastError: row.lastError,
    openedCount: row.openedCount,
    registeredBy: row.registeredBy,
  };
}

function line(row: ProviderEndpoint): string {
  const retry = row.retryAt === null ? '' : `  probes from ${iso(row.retryAt)}`;
  const error = row.lastError ? `  last error ${row.lastError}` : '';
  return `${row.endpointId}  ${row.provider}  ${row.baseUrl}  ${label(row).padEnd(11)} since ${iso(row.stateSince)}  failures ${row.failures}  opened ${row.openedCount}${error}${retry}`;
}
