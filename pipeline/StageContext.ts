import type { Bulkheads } from './bulkheads/createBulkheads.ts';
import type { ProviderHealth } from './providerHealth/createProviderHealth.ts';
import type { ChannelContext } from './channels/ChannelContext.ts';
import type { McpGateway } from './mcp/createMcpGateway.ts';
import type { ContractReader } from './runs/createContractReader.ts';

/**
 * What a stage receives first: the base context plus the pipeline's clients. Built once per
 * process in `ops/`; tests build their own.
 */
export type StageContext = ChannelContext & {
  contracts: ContractReader;
  /** The MCP Gateway's pooled connections: the only way a stage reaches a tool. */
  gateway: McpGateway;
  /** Shares of each stage's concurrency per project and per outside dependency. */
  bulkheads: Bulkheads;
  /**
   * The provider endpoints' circuit breakers the model route obeys; every process builds one
   * (`createRuntime`). Absent only in a test that wants no breaker.
   */
  providerHealth?: ProviderHealth;
};
