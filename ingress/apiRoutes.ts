import type { IncomingMessage } from 'node:http';
import type { PassThrough } from 'node:stream';
import Router from '@koa/router';
import type { DatabasePool } from 'slonik';
import { z } from 'zod';
import { withProject } from '../db/withProject.ts';
import { formatIssues } from '../pipeline/contracts/formatIssues.ts';
import { listActive } from '../db/contractRevisions.ts';
import { ContractViolationError, NotFoundError } from '../pipeline/errors.ts';
import { describeRun } from '../pipeline/runs/describeRun.ts';
import { isTerminal } from '../pipeline/runs/runState.ts';
import { acceptInbound, type AcceptDeps } from './acceptInbound.ts';
import { apiAuth, type ApiCaller } from './apiAuth.ts';
import type { AccountLookup } from './createAccountLookup.ts';
import { parseJson, readRawBody } from './readBody.ts';
import { traceIdFrom } from './traceIdFrom.ts';

/** The body of `POST /v1/projects/:projectId/messages`. */
export const ApiMessage = z.strictObject({
  text: z.string().min(1, 'must not be empty').max(100_000),
  /** Which conversation this continues; one session per conversation. Default: one per key. */
  conversation_id: z.string().min(1).max(200).optional(),
  /** Who says it, for bindings and rate limits. Default: the key. */
  sender_id: z.string().min(1).max(200).optional(),
  /** The project's API channel account. Default: its only one. */
  account: z
    .string()
    .regex(/^[a-z][a-z0-9_-]{0,62}$/)
    .optional(),
});

const IdempotencyKey = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

/** What the API routes need. */
export type ApiDeps = AcceptDeps & { accounts: AccountLookup; pool: DatabasePool };

/**
 * The API channel: send a message (202 with the run id, durable before the answer; an
 * `Idempotency-Key` makes a retry return the same run), read a run with its timeline and
 * output, and follow a run's progress as server-sent events.
 */
export function apiRoutes(deps: ApiDeps): Router {
  const router = new Router({ prefix: '/v1/projects/:projectId' });
  const anyRole = apiAuth({ pool: deps.pool, roles: ['client', 'operator', 'admin'] });

  router.post('/messages', anyRole, async (ctx) => {
    const projectId = ctx.params.projectId!;
    const caller = ctx.state.apiKey as ApiCaller;
    const parsed = ApiMessage.safeParse(parseJson(await readRawBody(ctx)));
    if (!parsed.success)
      throw new ContractViolationError(formatIssues(parsed.error), undefined, {
        code: 'BODY_INVALID',
      });
    const idem = ctx.get('idempotency-key');
    if (idem && !IdempotencyKey.safeParse(idem).success) {
      throw new ContractViolationError(
        ['Idempotency-Key: must be 1-200 printable ASCII characters without spaces'],
        undefined,
        { code: 'BODY_INVALID' },
      );
    }
    const accountId = parsed.data.account ?? (await defaultApiAccount(deps, projectId));
    await deps.accounts(projectId, accountId, 'api');
    const [accepted] = await acceptInbound(
      deps,
      { projectId, channel: 'api', accountId, traceId: traceIdFrom(ctx.get('traceparent')) },
      [
        {
          externalEventId: idem ? `idem:${idem}` : `req:${crypto.randomUUID()}`,
          sender: { id: parsed.data.sender_id ?? `key:${caller.keyId}`, isBot: false },
          conversation: { kind: 'dm', id: parsed.data.conversation_id ?? `key:${caller.keyId}` },
          message: { text: parsed.data.text },
        },
      ],
    );
    ctx.status = 202;
    ctx.body = { run_id: accepted!.runId, duplicate: !accepted!.created };
  });

  router.get('/runs/:runId', anyRole, async (ctx) => {
    ctx.body = await describeRun(deps.pool, ctx.params.projectId!, ctx.params.runId!);
  });

  router.get('/runs/:runId/events', anyRole, async (ctx) => {
    const projectId = ctx.params.projectId!;
    const runId = ctx.params.runId!;
    await describeRun(deps.pool, projectId, runId); // 404 before the stream opens
    ctx.req.socket.setTimeout(0);
    ctx.set({
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    ctx.status = 200;
    const { PassThrough } = await import('node:stream');
    const stream = new PassThrough();
    ctx.body = stream;
    void followRun(deps.pool, projectId, runId, stream, ctx.req);
  });

  return router;
}

async function defaultApiAccount(deps: ApiDeps, projectId: string): Promise<string> {
  const accounts = await withProject(deps.pool, projectId, (tx) =>
    listActive(tx, { kind: 'channel' }),
  );
  for (const a of accounts) {
    try {
      await deps.accounts(projectId, a.name, 'api');
      return a.name;
    } catch {
      // not an API account
    }
  }
  throw new NotFoundError('ACCOUNT_NOT_FOUND', `project "${projectId}" has no API channel account`);
}

/** Streams a run's transitions as SSE until it is terminal or the client goes away. */
async function followRun(
  pool: DatabasePool,
  projectId: string,
  runId: string,
  stream: PassThrough,
  req: IncomingMessage,
) {
  let closed = false;
  req.on('close', () => {
    closed = true;
  });
  let sent = 0;
  try {
    while (!closed) {
      const view = await describeRun(pool, projectId, runId);
      for (const t of view.timeline.slice(sent)) {
        stream.write(`event: transition\ndata: ${JSON.stringify(t)}\n\n`);
      }
      sent = view.timeline.length;
      if (isTerminal(view.state)) {
        stream.write(
          `event: done\ndata: ${JSON.stringify({ state: view.state, output: view.output, failure: view.failure })}\n\n`,
        );
        break;
      }
      stream.write(': keep-alive\n\n');
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch {
    stream.write(`event: error\ndata: ${JSON.stringify({ code: 'STREAM_FAILED' })}\n\n`);
  } finally {
    stream.end();
  }
}
