import Router from '@koa/router';
import { decideFromChannel } from '../pipeline/approvals/decideFromChannel.ts';
import type { ChannelRegistry, InboundRequest } from '../pipeline/channels/ChannelPlugin.ts';
import {
  isAccountStopped,
  STOPPED_RETRY_AFTER_S,
} from '../pipeline/channels/manager/accountGate.ts';
import { AppError } from '../pipeline/errors.ts';
import type { ContractReader } from '../pipeline/runs/createContractReader.ts';
import type { SecretResolver } from '../pipeline/secrets/createSecretResolver.ts';
import type { AppState } from './AppState.ts';
import { acceptInbound, type AcceptDeps } from './acceptInbound.ts';
import type { AccountLookup } from './createAccountLookup.ts';
import { parseJson, readRawBody } from './readBody.ts';
import { traceIdFrom } from './traceIdFrom.ts';

/** What the webhook routes need. */
export type WebhookDeps = AcceptDeps & {
  accounts: AccountLookup;
  secrets: SecretResolver;
  contracts: ContractReader;
  channels: ChannelRegistry;
};

/**
 * Channel webhooks: `POST /webhooks/<type>/:projectId/:accountId` for every registered plugin
 * with an inbound adapter (Telegram, LINE and Slack today), so the paths stay what existing
 * accounts were given. Each checks, in order: the account exists (404), the plugin verifies the request
 * as signed by it (401), the body fits (413), parses (400) and is the channel's shape (400,
 * naming the field), and its messages are admitted (429 / 503 with `Retry-After`, or taken
 * and delayed where the plugin's `overload` says a refusal would lose them) — and only then
 * writes. Nothing is created for a refused request. The
 * answer (200) comes after the durable write, so the channel's retry covers anything lost
 * before it. A button press the plugin reads as an approver's answer (an account with
 * `approvals: true`) decides its approval (decideFromChannel) and is answered 200 whatever the
 * outcome (with the plugin's body where it gives one); it starts no run. A handshake (Slack's `url_verification`) is answered with the
 * body the plugin gives and writes nothing.
 */
export function webhookRoutes(deps: WebhookDeps): Router<AppState> {
  const router = new Router<AppState>();

  for (const type of deps.channels.types()) {
    const plugin = deps.channels.plugin(type);
    const inbound = plugin.inbound;
    if (!inbound) continue;
    router.post(`/webhooks/${type}/:projectId/:accountId`, async (ctx) => {
      const { projectId, accountId } = ctx.params as { projectId: string; accountId: string };
      const account = await deps.accounts(projectId, accountId, type);
      let rawBody: Promise<Buffer> | undefined;
      const request: InboundRequest = {
        projectId,
        accountId,
        headers: Object.fromEntries(
          Object.entries(ctx.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v]),
        ),
        rawBody: () => (rawBody ??= readRawBody(ctx)),
        receivedAt: new Date(),
      };
      const verified = await inbound.verify(request, account, (ref) =>
        deps.secrets.resolve(projectId, ref),
      );
      if (!verified) {
        throw new AppError(
          'SIGNATURE_INVALID',
          `${inbound.signedBy} is missing or does not match`,
          { status: 401 },
        );
      }
      // A stopped account takes nothing in: 503 with Retry-After is what makes Telegram, LINE
      // and Slack deliver the update again later, and nothing is written.
      if (await refuseIfStopped(deps, projectId, accountId, ctx)) return;
      const raw = await request.rawBody();
      const body = inbound.parse ? inbound.parse(raw, request) : parseJson(raw);
      const result = inbound.normalize(body, account, request);
      if (result.kind === 'answer') {
        // A handshake (Slack's url_verification): answered as the plugin says, nothing written.
        ctx.status = 200;
        ctx.body = result.body;
        return;
      }
      if (result.kind === 'approval') {
        // Harmless twice: a retried press finds the approval decided and changes nothing.
        const outcome = await decideFromChannel(deps, {
          projectId,
          accountId,
          channel: account,
          answer: result.answer,
        });
        ctx.status = 200;
        ctx.body = result.body ?? { ok: true, runs: [], approval: outcome };
        return;
      }
      // Harmless twice: acceptInbound keys each event on its external id, so a retried
      // webhook finds its runs and makes none.
      const accepted = await acceptInbound(
        deps,
        {
          projectId,
          channel: type,
          accountId,
          traceId: traceIdFrom(ctx.get('traceparent')),
          limits: account.limits,
          overload: inbound.overload?.(account, request) ?? 'refuse',
        },
        result.batch.events,
      );
      const answer = {
        runs: accepted.map((a) => a.runId),
        duplicate: accepted.some((a) => !a.created),
      };
      ctx.status = 200;
      ctx.body = inbound.responseBody?.(answer) ?? { ok: true, runs: answer.runs };
    });
  }

  return router;
}

/**
 * Answers 503 `CHANNEL_ACCOUNT_STOPPED` with `Retry-After` when an operator has stopped the
 * account (the API's messages route asks the same); true when it did, and the route stops.
 * Logged as a refusal, like the 4xx answers.
 */
export async function refuseIfStopped(
  deps: Pick<WebhookDeps, 'pool' | 'redis' | 'redisPrefix' | 'logger'>,
  projectId: string,
  accountId: string,
  ctx: { set(name: string, value: string): void; status: number; body: unknown },
): Promise<boolean> {
  if (!(await isAccountStopped(deps, { projectId, accountId }))) return false;
  ctx.set('Retry-After', String(STOPPED_RETRY_AFTER_S));
  ctx.status = 503;
  ctx.body = {
    error: {
      code: 'CHANNEL_ACCOUNT_STOPPED',
      message: `channel account "${accountId}" is stopped; try again later`,
    },
  };
  deps.logger.warn(
    { status: 503, code: 'CHANNEL_ACCOUNT_STOPPED', projectId, accountId },
    'request refused',
  );
  return true;
}
