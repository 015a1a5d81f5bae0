import type { Redis } from 'ioredis';
import type { Context } from './context.ts';
import type { McpGateway } from './mcp/createMcpGateway.ts';
import type { ContractReader } from './runs/createContractReader.ts';
import type { SecretResolver } from './secrets/createSecretResolver.ts';

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
