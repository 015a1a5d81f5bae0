import type { Logger } from 'pino';

/**
 * Resolves after SIGTERM or SIGINT, once `close` has finished or `deadlineMs` has passed,
 * whichever is first; a process that cannot close in time exits anyway.
 */
export async function onShutdown(
  logger: Logger,
  close: () => Promise<void>,
  { deadlineMs = 10_000 }: { deadlineMs?: number } = {},
): Promise<void> {
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'shutting down');
  const timer = setTimeout(() => {
    logger.error({ deadlineMs }, 'shutdown deadline passed; exiting');
    process.exit(1);
  }, deadlineMs);
  timer.unref();
  await close();
  clearTimeout(timer);
}
