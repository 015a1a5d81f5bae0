import { timingSafeEqual, createHash } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Queue } from 'bullmq';
import type { Middleware } from 'koa';
import { AppError } from '../pipeline/errors.ts';

/** Where the queue dashboard lives. */
export const BOARD_PATH = '/admin/queues';

/**
 * bull-board behind our own auth (it has none): the admin token may do everything; the viewer
 * token may only look (GET/HEAD), so retry and clean stay with admins. A token comes as
 * `Authorization: Bearer <token>` or as the password of HTTP Basic auth (for browsers). A
 * changing request must also come from the dashboard's own origin, so a page elsewhere cannot
 * ride a browser's remembered credentials (CSRF). Without an admin token configured the
 * dashboard is off.
 */
export function adminBoard({
  queues,
  adminToken,
  viewerToken,
}: {
  queues: readonly Queue[];
  adminToken: string | undefined;
  viewerToken: string | undefined;
}): Middleware {
  // Two boards over the same queues: the viewer's is bull-board's read-only mode, so it shows
  // no retry or clean buttons at all (the method check below refuses them regardless).
  const mount = (readOnlyMode: boolean) => {
    const adapter = new KoaAdapter();
    createBullBoard({
      queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode })),
      serverAdapter: adapter,
    });
    adapter.setBasePath(BOARD_PATH);
    return adapter.registerPlugin({ mount: BOARD_PATH });
  };
  const boards = { admin: mount(false), viewer: mount(true) };

  return async function guardBoard(ctx, next): Promise<void> {
    if (ctx.path !== BOARD_PATH && !ctx.path.startsWith(`${BOARD_PATH}/`)) {
      await next();
      return;
    }
    if (!adminToken) {
      throw new AppError(
        'BOARD_DISABLED',
        'the queue dashboard needs AWOOOP_ADMIN_TOKEN to be set',
        { status: 404 },
      );
    }
    const presented = tokenFrom(ctx.get('authorization'));
    const role =
      presented && same(presented, adminToken)
        ? 'admin'
        : presented && viewerToken && same(presented, viewerToken)
          ? 'viewer'
          : null;
    if (!role) {
      ctx.set('WWW-Authenticate', 'Basic realm="awooop admin", charset="UTF-8"');
      throw new AppError('UNAUTHORIZED', 'the admin or viewer token is required', { status: 401 });
    }
    const reading = ctx.method === 'GET' || ctx.method === 'HEAD';
    if (!reading && role !== 'admin') {
      throw new AppError('FORBIDDEN', 'the viewer token is read-only', { status: 403 });
    }
    if (!reading && !sameOrigin(ctx.get('origin'), ctx.get('sec-fetch-site'), ctx.host)) {
      throw new AppError('FORBIDDEN', 'a changing request must come from the dashboard itself', {
        status: 403,
      });
    }
    await boards[role](ctx, next);
  };
}

function tokenFrom(header: string): string | null {
  const bearer = /^Bearer\s+(\S+)$/i.exec(header);
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+(\S+)$/i.exec(header);
  if (!basic) return null;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 ? decoded.slice(colon + 1) : null;
}

function same(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

function sameOrigin(origin: string, fetchSite: string, host: string): boolean {
  if (fetchSite && fetchSite !== 'same-origin') return false;
  if (!origin) return true; // not sent by a browser page (curl, scripts)
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
