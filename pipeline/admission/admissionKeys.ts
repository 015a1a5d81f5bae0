/**
 * The Redis keys of admission, under the app's prefix. In a Redis Cluster the prefix needs a
 * hash tag (`{awooop}`), as BullMQ's queues do: one admission script touches several of them.
 */
export const admissionKeys = {
  /** A limit's theoretical arrival time (GCRA), per scope. */
  rate: (prefix: string, scope: string) => `${prefix}:adm:rate:${scope}`,
  /** The project's runs accepted and not finished: run id → expiry (epoch ms). */
  projectRuns: (prefix: string, projectId: string) => `${prefix}:adm:runs:${projectId}`,
  /** Every project's runs accepted and not finished. */
  allRuns: (prefix: string) => `${prefix}:adm:runs`,
  /** Refusals and absorbed messages, `<project>|<reason>` → count, for `/metrics`. */
  refusals: (prefix: string) => `${prefix}:adm:refusals`,
};
