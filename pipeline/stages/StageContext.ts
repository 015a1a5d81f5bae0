import type { Redis } from 'ioredis';
import type { Context } from '../context.ts';
import type { RunJob, Stage } from '../contracts/runJob.ts';
import type { McpGateway } from '../mcp/createMcpGateway.ts';
import type { ContractReader } from '../runs/createContractReader.ts';
import type { SecretResolver } from '../secrets/createSecretResolver.ts';

/**
 * Adds a stage job for a run; the queue layer derives the job id from run and stage, and from
 * `notice` for the deliver job that sends a failed run's failure notice.
 */
export type Enqueue = (
  stage: Stage,
  job: RunJob,
  options?: { delayMs?: number; notice?: boolean },
) => Promise<void>;

/**
 * What a stage receives first: the base context plus the pipeline's clients. Built once per
 * process in `ops/`; tests build their own.
 */
export type StageContext = Context & {
  redis: Redis;
  /** Prefix of every Redis key this process writes (counters, pacing). */
  redisPrefix: string;
  secrets: SecretResolver;
  contracts: ContractReader;
  /** The MCP Gateway's pooled connections: the only way a stage reaches a tool. */
  gateway: McpGateway;
  /** Who the stage acts as in the audit trail, e.g. `worker:execute`. */
  actor: string;
  now: () => number;
};

/**
 * What a stage tells its queue shell: move on to `next` (null: nothing more to do; `notice`:
 * the run failed and deliver is to send its failure notice), or run this same stage again
 * after `waitMs` (a session's earlier run is still executing).
 */
export type StageOutcome =
  { next: Stage | null; notice?: boolean } | { waitMs: number; reason: string };
