import Router from '@koa/router';
import { z } from 'zod';
import { withProject } from '../db/withProject.ts';
import { describeChannelAccounts } from '../pipeline/channelManager/describeChannelAccounts.ts';
import {
  ACCOUNT_ACTIONS,
  requestAccountState,
  type AccountRequestDeps,
} from '../pipeline/channelManager/requestAccountState.ts';
import { formatIssues } from '../pipeline/contracts/formatIssues.ts';
import { ContractViolationError } from '../pipeline/errors.ts';
import { apiAuth, type ApiState } from './apiAuth.ts';
import type { AppState } from './AppState.ts';
import { parseJson, readRawBody } from './readBody.ts';

/** The query of `GET /v1/projects/:projectId/channels`. */
export const ChannelsQuery = z.strictObject({
  history: z
    .string()
    .regex(/^(0|[1-9]\d{0,2})$/, 'must be a whole number from 0 to 500')
    .transform(Number)
    .refine((n) => n <= 500, 'must be a whole number from 0 to 500')
    .optional(),
});

/** The body of a start / stop / restart: empty, or an empty object. */
export const AccountActionBody = z.strictObject({});

/**
 * The channel accounts API, as the permission table says (`channels.read`: viewer, operator,
 * admin; `channels.manage`: operator, admin): `GET /channels` lists every
 * account of the project with its snapshot (desired and actual state, revision, last
 * inbound / outbound / error, counts, its newest `?history=N` changes, 20 by default), and
 * `POST /channels/:accountId/start|stop|restart` asks for a change (200 with the account as
 * it now reads; 404 `ACCOUNT_NOT_FOUND` for an unknown account). A body other than `{}` is
 * 400 naming the field; nothing changes.
 */
export function channelRoutes(deps: AccountRequestDeps): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/projects/:projectId/channels' });
  const read = apiAuth({ pool: deps.pool, action: 'channels.read' });
  const manage = apiAuth({ pool: deps.pool, action: 'channels.manage' });

  router.get<ApiState>('/', read, async (ctx) => {
    const projectId = ctx.params.projectId!;
    const parsed = ChannelsQuery.safeParse(ctx.query);
    if (!parsed.success)
      throw new ContractViolationError(formatIssues(parsed.error), undefined, {
        code: 'QUERY_INVALID',
      });
    const channels = await withProject(deps.pool, projectId, (tx) =>
      describeChannelAccounts(tx, { historyLimit: parsed.data.history ?? 20 }),
    );
    ctx.body = { channels };
  });

  for (const action of ACCOUNT_ACTIONS) {
    // Harmless twice: requestAccountState changes the desired state only when it differs (a
    // restart is a new request each time, and reopens the account once more).
    router.post<ApiState>(`/:accountId/${action}`, manage, async (ctx) => {
      const projectId = ctx.params.projectId!;
      const accountId = String(ctx.params.accountId ?? '');
      const raw = await readRawBody(ctx);
      const parsed = AccountActionBody.safeParse(
        raw.toString('utf8').trim() === '' ? {} : parseJson(raw),
      );
      if (!parsed.success)
        throw new ContractViolationError(formatIssues(parsed.error), undefined, {
          code: 'BODY_INVALID',
        });
      const { changed, account } = await requestAccountState(deps, {
        projectId,
        accountId,
        action,
        actor: `api:${ctx.state.apiKey.keyId}`,
      });
      ctx.body = { changed, account };
    });
  }

  return router;
}
