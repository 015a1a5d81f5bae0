-- The agent's tool loop: its checkpoints, every tool call the gateway saw, approvals that
-- pause a run, the notices that ask operators, and gateway keys for external MCP clients.

-- A run that waits for a human's decision.
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check CHECK (state IN (
  'RECEIVED', 'RESOLVED', 'ADMITTED', 'WAITING_APPROVAL', 'EXECUTED', 'SANITIZED',
  'COMPLETED', 'FAILED'));
-- ...and comes back: WAITING_APPROVAL -> ADMITTED re-enters a state the run was in before
-- (once per approval), so a state may recur in a run's transitions. A repeated stage still
-- writes no second row: transitionRun only moves a run that is in its `from` state.
ALTER TABLE run_transitions DROP CONSTRAINT run_transitions_run_id_to_state_key;

-- The checkpoints of a run's tool loop, in order: each model step (its text and the tool
-- calls it asked for) and each tool result, written before the next step begins. A resumed
-- execute rebuilds the conversation from these and never repeats a finished step.
CREATE TABLE run_steps (
  project_id text NOT NULL,
  run_id     uuid NOT NULL REFERENCES runs (run_id),
  step_index integer NOT NULL CHECK (step_index >= 0),
  kind       text NOT NULL CHECK (kind IN ('model', 'tool')),
  body       jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, step_index)
);
SELECT awooop_make_append_only('run_steps');
SELECT awooop_enable_tenant_rls('run_steps');

-- Every call the gateway was asked to make, made or not. Arguments are stored redacted, with
-- the SHA-256 of the canonical {tool, arguments} (what an approval binds to); the credential
-- appears only as its ref. A run's call is keyed by the model step that asked for it and its
-- place in that step, so a resumed loop finds it: a call `started` with no result is never
-- made again unless its tool only reads.
CREATE TABLE tool_calls (
  call_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id       text NOT NULL REFERENCES projects (project_id),
  run_id           uuid REFERENCES runs (run_id),
  step_index       integer,
  call_index       integer,
  trace_id         text NOT NULL,
  agent            text NOT NULL,
  via              text NOT NULL CHECK (via IN ('run', 'mcp_endpoint')),
  server           text NOT NULL,
  tool             text NOT NULL,
  risk             text CHECK (risk IN ('read', 'write', 'execute', 'destructive')),
  arguments        jsonb NOT NULL,
  arguments_sha256 text NOT NULL CHECK (arguments_sha256 ~ '^[0-9a-f]{64}$'),
  credential_refs  text[] NOT NULL DEFAULT '{}',
  status           text NOT NULL CHECK (status IN (
                     'started', 'ok', 'error', 'timeout', 'refused', 'proposed',
                     'awaiting_approval', 'uncertain')),
  code             text,
  latency_ms       integer,
  result_sha256    text CHECK (result_sha256 ~ '^[0-9a-f]{64}$'),
  result_bytes     integer,
  created_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz,
  CHECK ((via = 'run') = (run_id IS NOT NULL AND step_index IS NOT NULL AND call_index IS NOT NULL))
);
CREATE UNIQUE INDEX tool_calls_run_step ON tool_calls (run_id, step_index, call_index)
  WHERE run_id IS NOT NULL;
CREATE INDEX tool_calls_project_created ON tool_calls (project_id, created_at DESC);
SELECT awooop_enable_tenant_rls('tool_calls');

-- A call that needs a human's yes. Bound to the SHA-256 of the exact tool and arguments and
-- to the agent that asked; decided once (pending -> approved | rejected | expired).
CREATE TABLE approvals (
  approval_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id   text NOT NULL REFERENCES projects (project_id),
  run_id       uuid NOT NULL REFERENCES runs (run_id),
  trace_id     text NOT NULL,
  step_index   integer NOT NULL,
  call_index   integer NOT NULL,
  agent        text NOT NULL,
  tool         text NOT NULL,
  risk         text NOT NULL CHECK (risk IN ('read', 'write', 'execute', 'destructive')),
  arguments    jsonb NOT NULL,
  call_sha256  text NOT NULL CHECK (call_sha256 ~ '^[0-9a-f]{64}$'),
  reasons      text[] NOT NULL,
  status       text NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
  expires_at   timestamptz NOT NULL,
  decided_by   text,
  decided_via  text CHECK (decided_via IN ('api', 'telegram', 'cli', 'sweeper')),
  decided_at   timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (run_id, step_index, call_index),
  CHECK ((status = 'pending') = (decided_at IS NULL))
);
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE status = 'pending';
CREATE INDEX approvals_project_created ON approvals (project_id, created_at DESC);
SELECT awooop_enable_tenant_rls('approvals');

-- The ask: one row per approval and operator on the project's approval channel, claimed
-- before the send and settled after it, as the outbound ledger does, so an operator is
-- asked once.
CREATE TABLE approval_notices (
  project_id          text NOT NULL,
  approval_id         uuid NOT NULL REFERENCES approvals (approval_id),
  recipient           text NOT NULL,
  status              text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'sending', 'sent', 'uncertain', 'failed')),
  lease_until         timestamptz,
  external_message_id text,
  error_code          text,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (approval_id, recipient)
);
CREATE INDEX approval_notices_pending ON approval_notices (updated_at)
  WHERE status IN ('queued', 'sending');
SELECT awooop_enable_tenant_rls('approval_notices');

-- Gateway keys: a key with the `mcp` role is bound to one agent and opens that agent's
-- governed MCP endpoint, nothing else.
ALTER TABLE api_keys ADD COLUMN agent text;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_roles_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_roles_check CHECK (
  roles <@ ARRAY['client', 'operator', 'admin', 'mcp'] AND cardinality(roles) > 0
  AND (('mcp' = ANY (roles)) = (agent IS NOT NULL))
  AND (NOT ('mcp' = ANY (roles)) OR cardinality(roles) = 1));

-- The sweeper finds approvals past their expiry and notices left unsent, across projects; the
-- metrics scrape counts calls and approvals by status.
GRANT SELECT (approval_id, project_id, run_id, trace_id, status, expires_at) ON approvals TO awooop_sweeper;
GRANT SELECT (project_id, approval_id, status, updated_at, lease_until) ON approval_notices TO awooop_sweeper;
CREATE POLICY sweeper_scan ON approvals FOR SELECT TO awooop_sweeper USING (true);
CREATE POLICY sweeper_scan ON approval_notices FOR SELECT TO awooop_sweeper USING (true);
GRANT SELECT (project_id, status) ON tool_calls TO awooop_sweeper;
CREATE POLICY sweeper_scan ON tool_calls FOR SELECT TO awooop_sweeper USING (true);
