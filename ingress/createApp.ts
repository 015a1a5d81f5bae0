import { createServer, METHODS, type Server } from 'node:http';
import type Router from '@koa/router';
import type { Queue } from 'bullmq';
import Koa from 'koa';
import type { Logger } from 'pino';
import type { Stage } from '../pipeline/contracts/runJob.ts';
import type { McpGateway } from '../pipeline/mcp/createMcpGateway.ts';
import type { ContractReader } from '../pipeline/runs/createContractReader.ts';
import type { SecretResolver } from '../pipeline/secrets/createSecretResolver.ts';
import { adminBoard } from './adminBoard.ts';
import type { AcceptDeps } from './acceptInbound.ts';
import { answerClientError } from './answerClientError.ts';
import { apiRoutes, type OpenStream } from './apiRoutes.ts';
import type { AppState } from './AppState.ts';
import { approvalRoutes } from './approvalRoutes.ts';
import { channelRoutes } from './channelRoutes.ts';
import { usageRoutes } from './usageRoutes.ts';
import type { AccountLookup } from './createAccountLookup.ts';
import { errorMiddleware } from './errorMiddleware.ts';
import { healthRoutes, type HealthDeps } from './healthRoutes.ts';
import { mcpEndpoint } from './mcpEndpoint.ts';
import { metricsRoute } from './metricsRoute.ts';
import { throttleCredentials, type CredentialLimits } from './throttleCredentials.ts';
import type { ChannelRegistry } from '../pipeline/channels/ChannelPlugin.ts';
import { webhookRoutes } from './webhookRoutes.ts';

/** Everything the HTTP edge needs, built once in `ops/`. */
export type AppDeps = HealthDeps &
  AcceptDeps & {
    logger: Logger;
    accounts: AccountLookup;
    secrets: SecretResolver;
    /** The channel plugins: each one's webhook route, and the senders approvals answer with. */
    channels: ChannelRegistry;
    /** The contract cache: approvals read the project's ACL and the run's pinned channel. */
    contracts: ContractReader;
    queues: Record<Stage, Queue>;
    adminToken?: string | undefined;
    viewerToken?: string | undefined;
    /** Renders `/metrics`; absent: no metrics route. */
    metrics?: () => Promise<string>;
    /** Opens `/metrics` (so does the admin token); with neither, metrics are off. */
    metricsToken?: string | undefined;
    /** The longest a run's event stream stays open. @defaultValue 600000 */
    streamMaxMs?: number | undefined;
    /**
     * The MCP Gateway's client side, for the agents' MCP endpoints; absent: they answer 503
     * `GATEWAY_UNAVAILABLE`. Its owner closes it after the server.
     */
    gateway?: McpGateway | undefined;
    /** Limits on failed credential attempts (429 past them); absent: none, as in most tests. */
    credentialLimits?: CredentialLimits | undefined;
  };

/** The Koa application, with what shutdown needs besides `server.close()`. */
export type App = Koa<AppState> & {
  /**
   * Ends every open run event stream and resolves once their responses are closed, so the
   * connections they held are idle and `server.close()` is not held open by them.
   */
  endStreams(): Promise<void>;
  /** How many run event streams are open now. */
  openStreams(): number;
};

/** Errors of a client that went away mid-response: nothing to answer and nothing to fix. */
const CLIENT_GONE = new Set(['ERR_STREAM_PREMATURE_CLOSE', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * The Koa application: error mapping first, then the routes. No listening here; its `listen`
 * makes a server that also answers what Node's HTTP parser refuses in the error shape.
 */
export function createApp(deps: AppDeps): App {
  const app = new Koa<AppState>({ proxy: false });
  const streams = new Set<OpenStream>();
  // What reaches here escaped errorMiddleware: mostly a streamed body that failed after its
  // headers went out. Koa's default handler would print to stderr; log it like the rest.
  app.on('error', (error: Error & { code?: string }) => {
    if (error.code !== undefined && CLIENT_GONE.has(error.code)) return;
    if (error.message === 'aborted') return;
    deps.logger.error({ err: error }, 'response failed');
  });
  app.use(errorMiddleware({ logger: deps.logger }));
  if (deps.credentialLimits) {
    app.use(
      throttleCredentials({ ...deps.credentialLimits, redis: deps.redis, logger: deps.logger }),
    );
  }
  app.use(
    adminBoard({
      queues: Object.values(deps.queues),
      adminToken: deps.adminToken,
      viewerToken: deps.viewerToken,
    }),
  );
  const routers: Router<AppState>[] = [
    healthRoutes(deps),
    webhookRoutes(deps),
    apiRoutes({ ...deps, streams }),
    approvalRoutes(deps),
    channelRoutes(deps),
    usageRoutes(deps),
    mcpEndpoint(deps),
  ];
  if (deps.metrics) {
    routers.push(
      metricsRoute({
        render: deps.metrics,
        metricsToken: deps.metricsToken,
        adminToken: deps.adminToken,
      }),
    );
  }
  for (const router of routers) {
    // Every method Node parses reaches a router; one outside the router's short default list
    // (PROPFIND, PURGE, ...) would be a 501 even where the path's routes say what they allow.
    // Implementing all of them makes it a 405 with Allow there, and a 404 on an unknown path.
    router.methods = [...METHODS];
    app.use(router.routes()).use(router.allowedMethods());
  }
  // Koa's listen, with a server that answers what its HTTP parser refuses in the error shape.
  const listen: Koa['listen'] = (...args: unknown[]) => {
    const handle = app.callback(); // settles only after handling its own errors, as in Koa's
    const server = createServer((req, res) => void handle(req, res));
    server.on('clientError', answerClientError({ logger: deps.logger }));
    return server.listen(...(args as Parameters<Server['listen']>));
  };
  return Object.assign(app, {
    listen,
    async endStreams() {
      const open = [...streams];
      for (const stream of open) stream.stop();
      await Promise.all(open.map((s) => s.ended));
    },
    openStreams: () => streams.size,
  });
}
