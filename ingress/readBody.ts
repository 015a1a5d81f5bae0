import type { Context } from 'koa';
import { AppError } from '../pipeline/errors.ts';

/** The most bytes a webhook or API body may have. */
export const BODY_LIMIT_BYTES = 1024 * 1024;

/**
 * Reads the raw request body (signatures are computed over these exact bytes), refusing more
 * than `limit` bytes with 413 — from Content-Length up front, or while streaming (chunked).
 * A refused body is not read further; the connection closes once the 413 has gone out.
 */
export async function readRawBody(ctx: Context, limit = BODY_LIMIT_BYTES): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limit) throw tooLarge(ctx, limit);
  const chunks: Buffer[] = [];
  let size = 0;
  // Leaving the loop must not destroy the request: the 413 has to reach the client first.
  for await (const chunk of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(ctx, limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Parses a JSON body; malformed JSON is a 400 that says where. */
export function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch (error) {
    throw new AppError('MALFORMED_JSON', `body is not valid JSON: ${(error as Error).message}`, {
      status: 400,
    });
  }
}

function tooLarge(ctx: Context, limit: number) {
  // The unread rest of the body would be taken for the next request on a kept-alive
  // connection, so this one ends: after the 413 is written, never before (a reset instead of
  // an answer is what a client would see otherwise).
  ctx.set('Connection', 'close');
  ctx.res.once('finish', () => ctx.req.destroy());
  return new AppError('BODY_TOO_LARGE', `body is larger than ${limit} bytes`, { status: 413 });
}
