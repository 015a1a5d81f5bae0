-- The run pipeline: encrypted secrets, project API keys, inbound events, runs and their
-- transitions, and the outbound ledger that makes every chunk go out once.

-- Channel and provider credentials, encrypted with AWOOOP_SECRET_KEY (AES-256-GCM). Contracts
-- name them as `secret:<name>`; the plaintext never leaves the process that resolves it.
CREATE TABLE secrets (
  project_id text NOT NULL REFERENCES projects (project_id),
  name       text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,127}$'),
  ciphertext bytea NOT NULL,
  iv         bytea NOT NULL CHECK (octet_length(iv) = 12),
  auth_tag   bytea NOT NULL CHECK (octet_length(auth_tag) = 16),
  key_id     text NOT NULL,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, name)
);
SELECT awooop_enable_tenant_rls('secrets');

-- Bearer keys of the API channel; only the SHA-256 of a key is stored.
CREATE TABLE api_keys (
  key_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id text NOT NULL REFERENCES projects (project_id),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  key_hash   text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
  key_prefix text NOT NULL,
  roles      text[] NOT NULL CHECK (roles <@ ARRAY['client', 'operator', 'admin'] AND cardinality(roles) > 0),
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
CREATE INDEX api_keys_project ON api_keys (project_id);
SELECT awooop_enable_tenant_rls('api_keys');

-- Every accepted inbound message. The unique key is the dedupe: a retried webhook finds it
-- taken and makes no second run.
CREATE TABLE conversation_events (
  event_id          uuid PRIMARY KEY,
  project_id        text NOT NULL REFERENCES projects (project_id),
  channel           text NOT NULL CHECK (channel IN ('telegram', 'line', 'slack', 'api')),
  account_id        text NOT NULL,
  external_event_id text NOT NULL,
  trace_id          text NOT NULL CHECK (trace_id ~ '^[0-9a-f]{32}$'),
  body              jsonb NOT NULL,
  -- SHA-256 of the canonical API request: an Idempotency-Key reused with another body is refused
  request_hash      text CHECK (request_hash ~ '^[0-9a-f]{64}$'),
  received_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (project_id, channel, account_id, external_event_id)
);
-- An API Idempotency-Key belongs to its key, whichever API account the request names: reused
-- with another account it is still taken (and refused, the body being different).
CREATE UNIQUE INDEX conversation_events_api_key ON conversation_events (project_id, external_event_id)
  WHERE channel = 'api';
SELECT awooop_make_append_only('conversation_events');
SELECT awooop_enable_tenant_rls('conversation_events');

CREATE TABLE runs (
  run_id           uuid PRIMARY KEY,
  -- arrival order; a conversation's runs are answered in this order
  run_seq          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  project_id       text NOT NULL REFERENCES projects (project_id),
  event_id         uuid NOT NULL UNIQUE REFERENCES conversation_events (event_id),
  trace_id         text NOT NULL CHECK (trace_id ~ '^[0-9a-f]{32}$'),
  channel          text NOT NULL,
  account_id       text NOT NULL,
  -- channel/account/dm|group/id[/thread]: the ordering domain, known at ingress
  conversation_key text NOT NULL,
  -- the API key that sent the message (API channel only): a client key reads only its own runs
  api_key_id       uuid REFERENCES api_keys (key_id),
  state            text NOT NULL DEFAULT 'RECEIVED' CHECK (state IN (
                     'RECEIVED', 'RESOLVED', 'ADMITTED', 'EXECUTED', 'SANITIZED',
                     'COMPLETED', 'FAILED')),
  agent            text,
  session_key      text,
  -- contract kind/name -> revision id, fixed at resolve
  pinned           jsonb NOT NULL DEFAULT '{}'::jsonb,
  mode             text CHECK (mode IN ('shadow', 'canary', 'read_only', 'suggest', 'auto_remediate')),
  -- whether replies go out (false: recorded only, as in shadow)
  live             boolean,
  policy           jsonb,
  output           jsonb,
  failure_code     text,
  failure_message  text,
  failure_detail   jsonb,
  executing_at     timestamptz,
  deadline_at      timestamptz NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz,
  CHECK ((state = 'FAILED') = (failure_code IS NOT NULL)),
  CHECK ((state IN ('COMPLETED', 'FAILED')) = (completed_at IS NOT NULL))
);
CREATE INDEX runs_open_conversation ON runs (project_id, conversation_key, run_seq)
  WHERE state NOT IN ('COMPLETED', 'FAILED');
CREATE INDEX runs_open_updated ON runs (updated_at) WHERE state NOT IN ('COMPLETED', 'FAILED');
CREATE INDEX runs_session ON runs (project_id, session_key, run_seq) WHERE state = 'COMPLETED';
CREATE INDEX runs_project_created ON runs (project_id, created_at DESC);
SELECT awooop_enable_tenant_rls('runs');

-- One row per state change; a run enters each state at most once.
CREATE TABLE run_transitions (
  transition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project_id    text NOT NULL,
  run_id        uuid NOT NULL REFERENCES runs (run_id),
  trace_id      text NOT NULL,
  stage         text NOT NULL,
  from_state    text,
  to_state      text NOT NULL,
  started_at    timestamptz NOT NULL,
  at            timestamptz NOT NULL DEFAULT now(),
  detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
  UNIQUE (run_id, to_state)
);
SELECT awooop_make_append_only('run_transitions');
SELECT awooop_enable_tenant_rls('run_transitions');

-- The outbound ledger: one row per chunk (or status / failure notice). A chunk is claimed
-- (queued -> sending, with a lease) before the call and marked sent after it, so a retried or
-- restarted deliver sends each chunk once. `uncertain`: the call went out and its answer was
-- lost, on a channel that cannot dedupe a repeat (Telegram, a LINE reply), so it is never
-- sent again: at most once, and the ledger says which chunks the channel may not have.
CREATE TABLE outbound_messages (
  message_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id          text NOT NULL,
  run_id              uuid NOT NULL REFERENCES runs (run_id),
  trace_id            text NOT NULL,
  kind                text NOT NULL CHECK (kind IN ('reply', 'status', 'failure')),
  chunk_index         integer NOT NULL CHECK (chunk_index >= 0),
  chunk_count         integer NOT NULL CHECK (chunk_count > chunk_index),
  text                text NOT NULL,
  format              text NOT NULL CHECK (format IN ('plain', 'HTML', 'MarkdownV2')),
  status              text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'sending', 'sent', 'uncertain', 'failed', 'suppressed')),
  method              text,
  attempts            integer NOT NULL DEFAULT 0,
  lease_until         timestamptz,
  external_message_id text,
  error_code          text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  sent_at             timestamptz,
  UNIQUE (run_id, kind, chunk_index)
);
CREATE INDEX outbound_messages_pending ON outbound_messages (updated_at)
  WHERE status IN ('queued', 'sending');
SELECT awooop_enable_tenant_rls('outbound_messages');

-- The sweeper (and the metrics scrape) read ids, states and codes across projects, nothing
-- else: a role of its own with column-limited SELECT, so recovering a stalled run or counting
-- runs needs no broader platform access.
DO $$
BEGIN
  CREATE ROLE awooop_sweeper NOLOGIN NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT awooop_sweeper TO %I', current_user);
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT USAGE ON SCHEMA public TO awooop_sweeper;
GRANT SELECT (run_id, project_id, trace_id, state, failure_code, deadline_at, updated_at) ON runs TO awooop_sweeper;
GRANT SELECT (run_id, project_id, kind, status, updated_at, lease_until) ON outbound_messages TO awooop_sweeper;
GRANT SELECT (project_id) ON projects TO awooop_sweeper;
CREATE POLICY sweeper_scan ON runs FOR SELECT TO awooop_sweeper USING (true);
CREATE POLICY sweeper_scan ON outbound_messages FOR SELECT TO awooop_sweeper USING (true);
CREATE POLICY sweeper_scan ON projects FOR SELECT TO awooop_sweeper USING (true);
