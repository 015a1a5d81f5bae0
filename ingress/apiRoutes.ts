import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import Router from '@koa/router';
import type { DatabasePool } from 'slonik';
import { z } from 'zod';
import { keyOwnsRun } from '../db/apiKeys.ts';
import { listActive } from '../db/contractRevisions.ts';
import { withProject } from '../db/withProject.ts';
import { canonicalJson, sha256Hex } from '../pipeline/contracts/canonicalJson.ts';
import { formatIssues } from '../pipeline/contracts/formatIssues.ts';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '../pipeline/contracts/storableText.ts';
import { ContractViolationError, NotFoundError } from '../pipeline/errors.ts';
import { capAttachments } from '../pipeline/channels/capAttachments.ts';
import { can } from '../pipeline/control/permissions.ts';
import { describeRun } from '../pipeline/runs/describeRun.ts';
import { acceptInbound, type AcceptDeps } from './acceptInbound.ts';
import { refuseIfStopped } from './webhookRoutes.ts';
import { apiAuth, type ApiCaller, type ApiState } from './apiAuth.ts';
import type { AppState } from './AppState.ts';
import type { AccountLookup } from './createAccountLookup.ts';
import { followRun } from './followRun.ts';
import { parseJson, readRawBody } from './readBody.ts';
import { traceIdFrom } from './traceIdFrom.ts';

/**
 * A string Postgres can store. The API refuses the rest (400 naming the field) where a channel
 * webhook, which its sender would redeliver, stores U+FFFD instead: an API caller can fix it.
 */
const Storable = z.string().refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);

/**
 * Something sent with an API message: a reference the client holds (a URL, a file id in its
 * own store), its kind, and what it says about it. AwoooP never fetches it.
 */
const ApiAttachment = z.strictObject({
  kind: z.enum(['image', 'video', 'audio', 'file', 'sticker']),
  ref: Storable.min(1).max(2000),
  mime_type: Storable.min(1).max(200).optional(),
  size_bytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  name: Storable.min(1).max(300).optional(),
});

/** The body of `POST /v1/projects/:projectId/messages`. */
export const ApiMessage = z
  .strictObject({
    /** May be empty only when attachments are sent. */
    text: Storable.max(100_000),
    /** References, capped by the account's `media` limits (past them, mentioned only). */
    attachments: z.array(ApiAttachment).max(100).optional(),
    /** Which conversation this continues; one session per conversation. Default: one per key. */
    conversation_id: Storable.min(1).max(200).optional(),
    /** Who says it, for bindings and rate limits. Default: the key. */
    sender_id: Storable.min(1).max(200).optional(),
    /** The project's API channel account. Default: its only one. */
    account: z
      .string()
      .regex(/^[a-z][a-z0-9_-]{0,62}$/)
      .optional(),
  })
  .refine((body) => body.text !== '' || (body.attachments ?? []).length > 0, {
    path: ['text'],
    message: 'must not be empty (unless attachments are sent)',
  });

const IdempotencyKey = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

const LastEventId = z.string().regex(/^\d{1,6}$/);

/**
 * A run event stream being served: `stop` ends it; `ended` settles once it no longer polls
 * and its response is closed.
 */
export type OpenStream = { stop(): void; ended: Promise<void> };

/** What the API routes need. */
export type ApiDeps = AcceptDeps & {
  accounts: AccountLookup;
  pool: DatabasePool;
  /** The app's open event streams, for shutdown to end. */
  streams: Set<OpenStream>;
  /** The longest an event stream stays open. @defaultValue 600000 */
  streamMaxMs?: number | undefined;
};

/**
 * The API channel: send a message (202 with the run id, durable before the answer; an
 * `Idempotency-Key` makes a retry with the same body return the same run, and is refused with
 * 422 for a different body), read a run with its timeline and output, and follow a run's
 * progress as server-sent events. Who may is the permission table's (`messages.send`,
 * `runs.read`): a `client` key reads only the runs it sent; a key whose roles grant
 * `runs.read_any` (viewer, operator, admin) reads every run of the project. A run that may not be read is 404, like one that
 * does not exist.
 */
export function apiRoutes(deps: ApiDeps): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/projects/:projectId' });
  const send = apiAuth({ pool: deps.pool, action: 'messages.send' });
  const read = apiAuth({ pool: deps.pool, action: 'runs.read' });
  const defaultAccount = createDefaultAccountLookup(deps);

  // Harmless twice: with an Idempotency-Key the event's unique (key id, key hash) id makes a
  // retry find the first run (acceptEvent); without one, every request is a new message.
  router.post<ApiState>('/messages', send, async (ctx) => {
    const projectId = ctx.params.projectId!;
    const caller = ctx.state.apiKey;
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
    const body = parsed.data;
    const accountId = body.account ?? (await defaultAccount(projectId));
    const account = await deps.accounts(projectId, accountId, 'api');
    if (await refuseIfStopped(deps, projectId, accountId, ctx)) return;
    const [accepted] = await acceptInbound(
      deps,
      {
        projectId,
        channel: 'api',
        accountId,
        traceId: traceIdFrom(ctx.get('traceparent')),
        apiKeyId: caller.keyId,
        requestHash: sha256Hex(
          canonicalJson({
            text: body.text,
            conversation_id: body.conversation_id ?? null,
            sender_id: body.sender_id ?? null,
            account: body.account ?? null,
            // Left out when absent, so a retry of a request made before attachments existed
            // still hashes as it did.
            ...(body.attachments === undefined ? {} : { attachments: body.attachments }),
          }),
        ),
      },
      [
        {
          // Per key, so two keys never share a run; hashed, so any valid key fits the column.
          externalEventId: idem ? `idem:${caller.keyId}:${sha256Hex(idem)}` : `req:${randomUUID()}`,
          sender: { id: body.sender_id ?? `key:${caller.keyId}`, isBot: false },
          conversation: { kind: 'dm', id: body.conversation_id ?? `key:${caller.keyId}` },
          message: {
            text: body.text,
            attachments: capAttachments(
              (body.attachments ?? []).map((a) => ({
                kind: a.kind,
                ref: a.ref,
                ...(a.mime_type === undefined ? {} : { mimeType: a.mime_type }),
                ...(a.size_bytes === undefined ? {} : { sizeBytes: a.size_bytes }),
                ...(a.name === undefined ? {} : { name: a.name }),
              })),
              account.media,
            ),
          },
        },
      ],
    );
    ctx.status = 202;
    ctx.body = { run_id: accepted!.runId, duplicate: !accepted!.created };
  });

  router.get<ApiState>('/runs/:runId', read, async (ctx) => {
    const projectId = ctx.params.projectId!;
    const runId = ctx.params.runId!;
    await assertReadable(deps.pool, projectId, runId, ctx.state.apiKey);
    ctx.body = await describeRun(deps.pool, projectId, runId);
  });

  router.get<ApiState>('/runs/:runId/events', read, async (ctx) => {
    const projectId = ctx.params.projectId!;
    const runId = ctx.params.runId!;
    // 404 before the stream opens
    await assertReadable(deps.pool, projectId, runId, ctx.state.apiKey);
    await describeRun(deps.pool, projectId, runId);
    const lastEventId = LastEventId.safeParse(ctx.get('last-event-id'));
    ctx.req.socket.setTimeout(0);
    ctx.set({
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    ctx.status = 200;
    const stream = new PassThrough();
    ctx.body = stream;
    const controller = new AbortController();
    // 'close' comes when the response has ended or the client has gone: either way, stop polling.
    const closed = new Promise<void>((resolve) =>
      ctx.res.once('close', () => {
        controller.abort();
        resolve();
      }),
    );
    const following = followRun(deps, { projectId, runId }, stream, {
      after: lastEventId.success ? Number(lastEventId.data) : 0,
      signal: controller.signal,
      ...(deps.streamMaxMs === undefined ? {} : { maxMs: deps.streamMaxMs }),
    });
    const open: OpenStream = {
      stop: () => controller.abort(),
      ended: Promise.all([following, closed]).then(() => {
        deps.streams.delete(open);
      }),
    };
    deps.streams.add(open);
  });

  return router;
}

/** A `client` key may read only the runs it sent; any other run is 404, as if absent. */
async function assertReadable(
  pool: DatabasePool,
  projectId: string,
  runId: string,
  caller: ApiCaller,
): Promise<void> {
  if (can(caller.roles, 'runs.read_any')) return;
  const own =
    z.uuid().safeParse(runId).success &&
    (await withProject(pool, projectId, (tx) => keyOwnsRun(tx, caller.keyId, runId)));
  if (!own) throw new NotFoundError('RUN_NOT_FOUND', `no run "${runId.slice(0, 64)}"`);
}

/**
 * The project's API channel account for a message that names none: its only active channel
 * contract of type `api`. With several, the message must say which (`account`), a 400 naming
 * the field, rather than one picked by name order. Cached like the account lookup (a burst of
 * messages does not list the contracts per request; an activation is seen within `ttlMs`); a
 * project without one is not cached, so the account is found as soon as it is applied.
 */
function createDefaultAccountLookup(deps: ApiDeps, ttlMs = 5000) {
  const cache = new Map<string, { name: string; until: number }>();
  return async (projectId: string): Promise<string> => {
    const hit = cache.get(projectId);
    if (hit && hit.until >= Date.now()) return hit.name;
    const accounts = await withProject(deps.pool, projectId, (tx) =>
      listActive(tx, { kind: 'channel' }),
    );
    const api: string[] = [];
    for (const a of accounts) {
      try {
        await deps.accounts(projectId, a.name, 'api');
        api.push(a.name);
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error; // not an API account; else a real fault
      }
    }
    if (api.length > 1) {
      throw new ContractViolationError(
        [`account: required: the project has several API accounts (${api.join(', ')})`],
        undefined,
        { code: 'BODY_INVALID' },
      );
    }
    const name = api[0];
    if (name === undefined) {
      throw new NotFoundError(
        'ACCOUNT_NOT_FOUND',
        `project "${projectId}" has no API channel account`,
      );
    }
    if (cache.size > 10_000) cache.clear();
    cache.set(projectId, { name, until: Date.now() + ttlMs });
    return name;
  };
}
