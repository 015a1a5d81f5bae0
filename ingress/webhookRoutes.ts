import Router, { type RouterContext } from '@koa/router';
import { decideFromTelegram } from '../pipeline/approvals/decideFromTelegram.ts';
import { normalizeLineWebhook } from '../pipeline/channels/line/normalizeLineWebhook.ts';
import { verifyLineSignature } from '../pipeline/channels/line/verifyLineSignature.ts';
import { decideFromSlack } from '../pipeline/approvals/decideFromSlack.ts';
import { readSlackInteraction } from '../pipeline/channels/slack/slackApprovals.ts';
import { slackPlugin } from '../pipeline/channels/slack/slackPlugin.ts';
import { normalizeTelegramUpdate } from '../pipeline/channels/telegram/normalizeTelegramUpdate.ts';
import { readApprovalCallback } from '../pipeline/channels/telegram/readApprovalCallback.ts';
import { verifyTelegramSecret } from '../pipeline/channels/telegram/verifyTelegramSecret.ts';
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
};

const unauthorized = (what: string) =>
  new AppError('SIGNATURE_INVALID', `${what} is missing or does not match`, { status: 401 });

/**
 * Channel webhooks. Each checks, in order: the account exists (404), the request is signed by
 * it (401), the body fits (413), parses (400) and is the channel's shape (400, naming the
 * field) — and only then writes. Nothing is created for a refused request. The answer (200)
 * comes after the durable write, so the channel's retry covers anything lost before it.
 * On a Telegram account with `approvals: true`, an Approve / Reject button press decides
 * its approval (decideFromTelegram) and is answered 200 whatever the outcome; it starts no run.
 * Slack's Events API posts to `/webhooks/slack/…`: signed `v0` (a timestamp older than five
 * minutes is a 401 too), its `url_verification` answered with the challenge, and each
 * mention or direct message accepted once per `event_id`, well inside Slack's 3 s. On a Slack
 * account with `approvals: true`, `…/interactivity` takes Block Kit button presses, signed
 * the same way, and decides the approval (decideFromSlack); it starts no run.
 */
export function webhookRoutes(deps: WebhookDeps): Router<AppState> {
  const router = new Router<AppState>();

  router.post('/webhooks/telegram/:projectId/:accountId', async (ctx) => {
    const { projectId, accountId } = ctx.params as { projectId: string; accountId: string };
    const account = await deps.accounts(projectId, accountId, 'telegram');
    const expected = await deps.secrets.resolve(projectId, account.webhookSecret);
    if (!verifyTelegramSecret(ctx.get('x-telegram-bot-api-secret-token') || undefined, expected)) {
      throw unauthorized('X-Telegram-Bot-Api-Secret-Token');
    }
    const body = parseJson(await readRawBody(ctx));
    const callback = account.approvals ? readApprovalCallback(body) : null;
    if (callback) {
      // Harmless twice: a retried update finds the approval decided and changes nothing.
      const outcome = await decideFromTelegram(deps, { projectId, channel: account, callback });
      ctx.status = 200;
      ctx.body = { ok: true, runs: [], approval: outcome };
      return;
    }
    // An edit of a message already answered is not a new question: acknowledged, no run.
    const batch = normalizeTelegramUpdate(body, { edits: 'ignore' });
    const accepted = await acceptInbound(
      deps,
      { projectId, channel: 'telegram', accountId, traceId: traceIdFrom(ctx.get('traceparent')) },
      batch.events,
    );
    ctx.status = 200;
    ctx.body = {
      ok: true,
      runs: accepted.map((a) => a.runId),
      duplicate: accepted.some((a) => !a.created),
    };
  });

  router.post('/webhooks/line/:projectId/:accountId', async (ctx) => {
    const { projectId, accountId } = ctx.params as { projectId: string; accountId: string };
    const account = await deps.accounts(projectId, accountId, 'line');
    const raw = await readRawBody(ctx);
    const secret = await deps.secrets.resolve(projectId, account.channelSecret);
    if (!verifyLineSignature(raw, secret, ctx.get('x-line-signature') || undefined)) {
      throw unauthorized('x-line-signature');
    }
    const batch = normalizeLineWebhook(parseJson(raw), new Date());
    const accepted = await acceptInbound(
      deps,
      { projectId, channel: 'line', accountId, traceId: traceIdFrom(ctx.get('traceparent')) },
      batch.events,
    );
    ctx.status = 200;
    ctx.body = { ok: true, runs: accepted.map((a) => a.runId) };
  });

  /** The Slack account of the request, once its `v0` signature is checked; else a 401. */
  const verifiedSlack = async (ctx: RouterContext<AppState>) => {
    const { projectId, accountId } = ctx.params as { projectId: string; accountId: string };
    const account = await deps.accounts(projectId, accountId, 'slack');
    let raw: Buffer | undefined;
    const request = {
      projectId,
      accountId,
      headers: {
        'x-slack-signature': ctx.get('x-slack-signature') || undefined,
        'x-slack-request-timestamp': ctx.get('x-slack-request-timestamp') || undefined,
      },
      rawBody: async () => (raw ??= await readRawBody(ctx)),
      receivedAt: new Date(),
    };
    const secret = (ref: string) => deps.secrets.resolve(projectId, ref);
    if (!(await slackPlugin.inbound!.verify(request, account, secret))) {
      throw unauthorized('X-Slack-Signature or X-Slack-Request-Timestamp');
    }
    return { projectId, accountId, account, request };
  };

  router.post('/webhooks/slack/:projectId/:accountId', async (ctx) => {
    const { projectId, accountId, account, request } = await verifiedSlack(ctx);
    const inbound = slackPlugin.inbound!;
    const result = inbound.normalize(parseJson(await request.rawBody()), account, request);
    ctx.status = 200;
    if (result.kind === 'answer') {
      ctx.body = result.body;
      return;
    }
    if (result.kind !== 'messages') {
      ctx.body = { ok: true, runs: [] };
      return;
    }
    // Harmless twice: a retry (X-Slack-Retry-Num) or a concurrent copy carries the same
    // event_id, which conversation_events' unique key admits once; the copy gets the same run.
    const accepted = await acceptInbound(
      deps,
      { projectId, channel: 'slack', accountId, traceId: traceIdFrom(ctx.get('traceparent')) },
      result.batch.events,
    );
    ctx.body = {
      ok: true,
      runs: accepted.map((a) => a.runId),
      duplicate: accepted.some((a) => !a.created),
    };
  });

  // Slack's Interactivity Request URL: a Block Kit button press, a signed `payload=` form.
  router.post('/webhooks/slack/:projectId/:accountId/interactivity', async (ctx) => {
    const { projectId, account, request } = await verifiedSlack(ctx);
    const answer = account.approvals ? readSlackInteraction(await request.rawBody()) : null;
    // Harmless twice: a repeated press finds the approval decided and changes nothing.
    const outcome = answer ? await decideFromSlack(deps, { projectId, answer }) : 'unknown_action';
    ctx.status = 200;
    ctx.body = { ok: true, approval: outcome };
  });

  return router;
}
