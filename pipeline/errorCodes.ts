/**
 * Every error code the platform raises, answers or stores, with one line on what it means.
 * A code is a wire contract: it crosses processes (job failures, run rows, ledger rows) and
 * the network (`{ error: { code, message } }`, MCP tool results). It sits beside
 * `errors.ts`, which re-exports {@link ErrorCode} for `db/` (whose imports stop at contracts
 * and errors). `AppError.code` is typed as {@link ErrorCode},
 * so a code missing here, or misspelt, fails the type check; `docs/error-codes.md` is
 * rendered from this map and a test keeps it equal.
 *
 * Grouped by where a code is raised; the doc is sorted by name.
 */
export const ERROR_CODES = {
  // Contracts, artifacts and the control plane
  CONTRACT_INVALID:
    'A contract body, tenant file or CLI argument failed validation; the message names each bad field.',
  CONTRACT_NOT_FOUND: 'The CLI was asked for a contract that has no revision in this project.',
  REVISION_NOT_FOUND:
    'A contract revision asked for by id or version does not exist (or is not visible to this project).',
  CONTRACT_HASH_MISMATCH:
    'A stored contract revision no longer matches its recorded `body_hash`: it is refused, not used.',
  CONTRACT_BODY_INVALID: 'A stored contract revision no longer parses under the current schema.',
  ARTIFACT_NOT_FOUND: 'A prompt, schema or other artifact named by ref and SHA-256 is not stored.',
  ARTIFACT_HASH_MISMATCH: "A stored artifact's bytes no longer hash to its recorded SHA-256.",

  // Resolve and policy: why a run could not start
  PROJECT_NOT_CONFIGURED: 'The project has no active project contract.',
  CHANNEL_NOT_CONFIGURED: 'No active channel contract names the account the event came in on.',
  AGENT_NOT_CONFIGURED:
    'No active agent contract has the name a binding (or an MCP key) points at.',
  POLICY_NOT_CONFIGURED: "No active policy contract has the name the agent's contract points at.",
  RUNTIME_NOT_CONFIGURED: 'The project has no active runtime contract.',
  MODE_NOT_CONFIGURED: 'The flow has no migration mode (`project_migration_state`).',
  RATE_LIMITED:
    "Over the policy's rate gate: the run waits in the queue for the next minute's window (the wait's reason in the log). Runs failed with it before the gate delayed keep the code.",
  BUDGET_EXCEEDED:
    "A model step or tool call would pass a budget (the run's, or the project's day or month); the run ends and spends no more.",
  PRIVACY_BLOCKED:
    "The run's input carries personal data (`detail.pii_classes`) that no model of its route may see (`privacy.piiAccess`); nothing was sent.",
  MODE_FORBIDS:
    'The migration mode forbids this: in shadow, read_only or suggest mode only read tools are called.',

  // Runs: loading, pinning, timing out, retrying
  RUN_NOT_FOUND: 'No run with this id in this project.',
  RUN_NOT_PINNED:
    'A run has no pinned revision of a contract it needs (a bug: resolve pins them all).',
  RUN_TIMEOUT:
    "The sweeper failed a run that outlived its deadline (the runtime contract's run timeout).",
  RUN_MOVED:
    'The run left the state this step expected while the step ran; the retry sees the new state.',
  RUN_FAILED: 'Outbound ledger: a reply or status row withdrawn because its run failed.',
  RUN_RETRIED: 'Outbound ledger: a failure notice withdrawn because its run was retried.',
  RUN_NOT_FAILED:
    '`runs retry` refused: only a FAILED run can be retried; the message names its state.',
  RUN_NOT_RETRYABLE:
    '`runs retry` refused: the run failed in a way a retry cannot undo (for instance at an approval).',
  RUN_JOB_RUNNING:
    "`runs retry` refused for now: the run's stage job is still running; try again shortly.",
  STAGE_FAILED:
    'A stage failed with an error that carried no code of its own, or used up its attempts.',
  STEP_RACE:
    'Another worker settled the same tool call first; this attempt stops and the retry replays the checkpoints.',
  OVERTAKEN: 'Outbound ledger: a progress status row withdrawn because the reply overtook it.',

  // Model providers and the model route
  MODEL_AUTH_FAILED: 'A model provider refused the API key (HTTP 401 or 403).',
  MODEL_BAD_REQUEST:
    'A model provider refused the request as malformed (another 4xx); it is not retried.',
  MODEL_RATE_LIMITED: 'A model provider answered 429; its `Retry-After`, when given, is obeyed.',
  MODEL_SERVER_ERROR: 'A model provider answered 5xx or 409.',
  MODEL_TIMEOUT: 'A model provider gave no answer within the target timeout (or answered 408).',
  MODEL_NETWORK: 'A model provider could not be reached (DNS, refused or reset connection).',
  MODEL_BAD_RESPONSE: "A model provider's 2xx answer was not JSON or not the expected shape.",
  MODEL_UNAVAILABLE:
    'Every target on the model route failed, and at least one failure could pass with time: retried later.',
  MODEL_CIRCUIT_OPEN:
    "Every target on the model route is behind an open circuit breaker (provider health): retried once a breaker's cool-down passes.",
  MODEL_ENDPOINT_NOT_ALLOWED:
    'A route names a provider endpoint the platform has not registered (`AWOOOP_PROVIDER_REGISTRATION=operator`): it is skipped, never called.',
  MODEL_REJECTED:
    'Every target on the model route refused the request as configured (or the route is empty): not retried.',

  // Output
  OUTPUT_SCHEMA_INVALID:
    "The model's output failed the agent's output schema; it never reaches a channel (fail closed).",
  CHUNK_LIMIT_INVALID:
    "A channel's chunk limit is not a positive integer large enough to hold one character.",

  // Tools and the MCP gateway
  TOOL_UNKNOWN:
    'No MCP server of this project declares the tool the model (or MCP client) asked for.',
  TOOL_NOT_GRANTED: "The agent's grants do not include this tool.",
  TOOL_PROJECT_MISMATCH:
    'The MCP gateway contract belongs to another project (a bug or an attack).',
  CONTEXT_DOMAIN: "The tool's server belongs to another context domain than the agent.",
  ABOVE_SAFETY_CEILING: "The tool's risk class is above the agent's safety ceiling.",
  ENVIRONMENT_NOT_GRANTED: "The grant does not cover the tool server's environment.",
  WRITE_TOOLS_OFF:
    'A write, execute or destructive tool while the runtime has `features.writeTools` off.',
  INVALID_ARGUMENTS: "The model's tool-call arguments were not a JSON object; nothing was called.",
  APPROVAL_REQUIRED:
    'The tool needs a human approval, and an MCP endpoint call has no run to pause: not called.',
  PROPOSAL_ONLY: 'In suggest mode the tool may only be proposed; an MCP endpoint call is not made.',
  TOOL_SERVER_UNAVAILABLE:
    'The MCP server could not be started or reached, or dropped the connection.',
  TOOL_TIMEOUT: 'The MCP tool call did not finish within its timeout.',
  TOOL_PROTOCOL_ERROR: 'The MCP server answered with a protocol error.',
  TOOL_ERROR: 'The MCP tool ran and reported a failure of its own (`isError: true`).',
  TOOL_OUTCOME_UNKNOWN:
    'A tool call was started but never settled (its worker died): whether it took effect is unknown.',
  TOOL_CALL_FAILED:
    'An MCP endpoint call failed for a reason not otherwise named; the detail is in the server log.',
  CANCELLED: 'The MCP client went away before its tool call finished.',
  GATEWAY_UNAVAILABLE:
    'This web process has no MCP gateway, so the MCP endpoint cannot answer (503).',
  WRONG_AGENT: 'The MCP key does not open the agent named in the path.',
  AGENT_NOT_FOUND: 'The MCP endpoint path does not name a valid agent.',

  // Approvals
  NOT_APPROVER: 'The decider is not an ACL member with the approver role (or admin).',
  APPROVAL_NOT_FOUND: 'No approval with this id in this project.',
  APPROVAL_APPROVED:
    'Approval notice ledger: the approval was approved before this notice went out, so it is not sent.',
  APPROVAL_EXPIRED:
    'The approval passed its deadline before anyone decided; the run fails with this code.',
  APPROVAL_ALREADY_DECIDED: 'The approval was decided already; a second decision changes nothing.',
  APPROVAL_MISMATCH:
    'The approval (or a restarted tool call) no longer matches what was asked: other arguments or hash.',
  APPROVAL_REJECTED: 'An approver rejected the tool call; the run fails with this code.',
  APPROVALS_CHANNEL_UNAVAILABLE:
    'Approval notice ledger: the approvals channel is not configured or cannot send.',

  // Channels and delivery
  CHANNEL_RATE_LIMITED:
    'A channel answered 429; the job waits out its `retry_after` / `Retry-After` (no attempt spent).',
  BULKHEAD_FULL:
    "The share of concurrency the job needs (its project's, or an outside dependency's) is full: the job waits (no attempt spent).",
  CHANNEL_PACING:
    'Our own per-chat send pacing asked the job to wait for a send slot (no attempt spent).',
  CHANNEL_UNAVAILABLE:
    'A channel could not be reached or answered 5xx before anything was sent: retried.',
  CHANNEL_UNCERTAIN:
    'A send may or may not have gone out (the connection broke mid-call): settled `uncertain`, not resent.',
  CHANNEL_REJECTED: 'A channel refused the message (4xx); it is not retried.',
  CHANNEL_QUOTA_EXCEEDED: "The channel's message quota is used up (LINE's monthly limit).",
  CHANNEL_NOT_SUPPORTED: 'Sending on this channel type is not built yet.',
  CHANNEL_ACCOUNT_STOPPED:
    'The channel account is stopped by an operator: its webhook answers 503 with `Retry-After` and its sends wait until it is started again.',
  CHANNEL_CONNECTION_FAILED:
    "The ChannelManager could not open or keep an account's connection (or register its webhook); the snapshot's last error says why.",
  LINE_BATCH_INVALID: 'LINE takes 1 to 5 messages per call; the batch was outside that.',
  LINE_REPLY_TOKEN_INVALID:
    'The LINE reply token was used or expired; the row falls back to a push.',
  CALLBACK_UNAVAILABLE:
    "The API channel's callback URL could not be reached or answered 5xx / 429: retried.",
  CALLBACK_REJECTED:
    "The API channel's callback URL is invalid or answered another 4xx: not retried.",
  DELIVERY_IN_PROGRESS:
    "Another worker holds this run's outbound rows; the job comes back in a second.",
  SENDER_LOST:
    'Outbound ledger: the previous sender died mid-call and the channel cannot dedupe, so the row is `uncertain`.',
  SEND_FAILED:
    'Outbound or approval-notice ledger: a send failed with an error that carried no code of its own.',

  // Secrets
  SECRET_MISSING: 'A `secret:` or `env:` reference names nothing that is set.',
  SECRET_REF_INVALID: 'A secret reference is not `secret:NAME` or `env:NAME`.',
  SECRET_REF_NOT_ALLOWED:
    "An `env:` reference names a variable outside the platform's `AWOOOP_ENV_SECRETS`.",
  SECRET_KEY_MISSING: '`AWOOOP_SECRET_KEY` is not set, so a sealed secret cannot be read.',
  SECRET_KEY_MISMATCH:
    'A secret was sealed with another key than the configured `AWOOOP_SECRET_KEY`.',
  SECRET_UNREADABLE: 'A sealed secret failed its integrity check (AES-GCM tag).',
  SECRET_UNAVAILABLE:
    "A model's API key could not be read for a reason not otherwise named (retried unless refused).",

  // Infrastructure
  DATABASE_UNAVAILABLE:
    'Postgres is unreachable (a restart, a failover): HTTP answers 503 with `Retry-After`; jobs wait.',
  DB_LOGIN_REFUSED:
    'Postgres refused the login role (missing role, wrong password, `pg_hba.conf`).',
  REDIS_UNAVAILABLE: 'The CLI could not reach Redis.',
  ENQUEUE_TIMEOUT: 'Redis did not take a stage job in time; the sweeper enqueues the run later.',
  TENANT_ISOLATION:
    'Something tried to cross a tenant boundary. Always a bug or an attack; never retried.',

  // The HTTP edge: requests, credentials, bodies
  UNAUTHORIZED: 'HTTP 401: no credential, or not one this route takes.',
  FORBIDDEN: 'HTTP 403: the credential is valid but may not do this.',
  API_KEY_INVALID: 'The project API key is malformed, unknown or revoked.',
  PROJECT_NOT_FOUND: 'No project with this id (or the key does not belong to it).',
  ACCOUNT_NOT_FOUND: 'No channel account with this id in this project.',
  SIGNATURE_INVALID: "A webhook's secret token or signature is missing or does not match.",
  TOO_MANY_FAILED_ATTEMPTS:
    'HTTP 429 with `Retry-After`: too many failed credentials from this address or for this project.',
  TOO_MANY_MESSAGES:
    "HTTP 429 with `Retry-After`: over a per-minute limit of the project, the account, the sender or the conversation (their contracts' `limits`); nothing was written.",
  PROJECT_BACKLOG_FULL:
    'HTTP 429 with `Retry-After`: the project has as many runs unfinished as its backlog bound allows; nothing was written.',
  PLATFORM_BUSY:
    'HTTP 503 with `Retry-After`: the platform has as many runs unfinished as `AWOOOP_MAX_BACKLOG` allows; nothing was written.',
  BODY_INVALID: 'An HTTP body failed validation; the message names each bad field.',
  QUERY_INVALID: 'A query string failed validation; the message names each bad field.',
  EVENT_INVALID: 'An inbound channel event could not be normalized.',
  IDEMPOTENCY_KEY_REUSED: 'The idempotency key was used before with a different body.',
  MALFORMED_JSON: 'The body is not valid JSON.',
  BODY_TOO_LARGE: "The body is larger than the route's limit (HTTP 413).",
  MALFORMED_REQUEST: "Node's HTTP parser could not read the request.",
  HEADERS_TOO_LARGE: 'The request headers are larger than the server accepts (HTTP 431).',
  CHUNK_EXTENSIONS_TOO_LARGE:
    'Chunked-encoding extensions larger than the server accepts (HTTP 413).',
  REQUEST_TIMEOUT:
    'HTTP 408: the request did not arrive in time (also the status-named code of a 408).',
  STREAM_FAILED: 'An SSE run stream ended on an error; sent as its last `error` event.',
  METRICS_DISABLED: '`/metrics` is off: no metrics token is configured (HTTP 404).',
  BOARD_DISABLED: 'The queue dashboard is off: `AWOOOP_ADMIN_TOKEN` is not set (HTTP 404).',
  INTERNAL: 'HTTP 500: an unexpected error; its detail is in the server log only.',

  // The HTTP edge: named after the status, for an answer no route gave a code of its own
  // (a library's exposed client error, the router's 404 / 405 / 501). See ingress/statusErrorCode.ts.
  BAD_REQUEST: 'HTTP 400 from a library or Koa, with no code of our own.',
  PAYMENT_REQUIRED: 'HTTP 402 from a library, with no code of our own.',
  NOT_FOUND: 'HTTP 404: no route for this method and path.',
  METHOD_NOT_ALLOWED: 'HTTP 405: the route exists, but not for this method.',
  NOT_ACCEPTABLE: 'HTTP 406 from a library, with no code of our own.',
  PROXY_AUTHENTICATION_REQUIRED: 'HTTP 407 from a library, with no code of our own.',
  CONFLICT: 'HTTP 409 from a library, with no code of our own.',
  GONE: 'HTTP 410 from a library, with no code of our own.',
  LENGTH_REQUIRED: 'HTTP 411 from a library, with no code of our own.',
  PRECONDITION_FAILED: 'HTTP 412 from a library, with no code of our own.',
  PAYLOAD_TOO_LARGE: 'HTTP 413 from a library, with no code of our own.',
  URI_TOO_LONG: 'HTTP 414 from a library, with no code of our own.',
  UNSUPPORTED_MEDIA_TYPE: 'HTTP 415 from a library, with no code of our own.',
  RANGE_NOT_SATISFIABLE: 'HTTP 416 from a library, with no code of our own.',
  EXPECTATION_FAILED: 'HTTP 417 from a library, with no code of our own.',
  I_M_A_TEAPOT: 'HTTP 418 from a library, with no code of our own.',
  MISDIRECTED_REQUEST: 'HTTP 421 from a library, with no code of our own.',
  UNPROCESSABLE_ENTITY: 'HTTP 422 from a library, with no code of our own.',
  LOCKED: 'HTTP 423 from a library, with no code of our own.',
  FAILED_DEPENDENCY: 'HTTP 424 from a library, with no code of our own.',
  TOO_EARLY: 'HTTP 425 from a library, with no code of our own.',
  UPGRADE_REQUIRED: 'HTTP 426 from a library, with no code of our own.',
  PRECONDITION_REQUIRED: 'HTTP 428 from a library, with no code of our own.',
  TOO_MANY_REQUESTS: 'HTTP 429 from a library, with no code of our own.',
  REQUEST_HEADER_FIELDS_TOO_LARGE: 'HTTP 431 from a library, with no code of our own.',
  UNAVAILABLE_FOR_LEGAL_REASONS: 'HTTP 451 from a library, with no code of our own.',
  NOT_IMPLEMENTED: 'HTTP 501: the router does not know this method at all.',
  HTTP_ERROR:
    'Any other error status no route gave a code of its own (a 5xx without a body, a status Node has no name for).',
} as const;

/** A code in {@link ERROR_CODES}: what `AppError.code`, run failures and ledger rows carry. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Whether `value` is a registered {@link ErrorCode} (for codes read back from storage). */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}
