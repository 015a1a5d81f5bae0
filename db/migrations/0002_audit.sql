-- The audit trail: append-only and tamper-evident.
--
-- Rows are hash-chained per (project, chain), where a chain is one subject's history
-- ('run:<id>', 'contract:agent:sre', ...). A busy tenant's runs write to different chains, so
-- audit inserts only ever wait for another write to the same subject. Each row's hash covers
-- its fields and the previous row's hash; the head of every chain is kept in
-- audit_chain_heads, and periodic per-project checkpoints fold the rows written since the
-- last checkpoint into one digest, themselves chained. `awooop audit verify` recomputes all.

CREATE TABLE audit_events (
  audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project_id  text NOT NULL CHECK (project_id ~ '^[a-z][a-z0-9_-]{1,62}$'),
  chain       text NOT NULL CHECK (length(chain) BETWEEN 1 AND 200),
  seq         bigint NOT NULL,
  occurred_at timestamptz NOT NULL,
  actor       text NOT NULL,
  action      text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.:-]*$'),
  subject     text NOT NULL,
  detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
  trace_id    text,
  run_id      uuid,
  prev_hash   text NOT NULL,
  row_hash    text NOT NULL,
  UNIQUE (project_id, chain, seq)
);
CREATE INDEX audit_events_project_time ON audit_events (project_id, occurred_at);
CREATE INDEX audit_events_run ON audit_events (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE audit_chain_heads (
  project_id text NOT NULL,
  chain      text NOT NULL,
  seq        bigint NOT NULL,
  head_hash  text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, chain)
);

CREATE TABLE audit_checkpoints (
  checkpoint_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project_id      text NOT NULL,
  seq             bigint NOT NULL,
  from_audit_id   bigint NOT NULL,
  to_audit_id     bigint NOT NULL,
  event_count     bigint NOT NULL,
  events_digest   text NOT NULL,
  prev_hash       text NOT NULL,
  checkpoint_hash text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (project_id, seq),
  CHECK (to_audit_id >= from_audit_id)
);

-- The hash of one audit row: SHA-256 over a JSON array of its fields. jsonb's text form is
-- canonical (keys ordered, whitespace fixed) and the time is taken as epoch microseconds, so
-- the result does not depend on session settings such as TimeZone.
CREATE FUNCTION audit_row_hash(
  p_project_id text, p_chain text, p_seq bigint, p_occurred_at timestamptz, p_actor text,
  p_action text, p_subject text, p_detail jsonb, p_trace_id text, p_run_id uuid,
  p_prev_hash text
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(sha256(convert_to(jsonb_build_array(
    p_project_id, p_chain, p_seq, (extract(epoch FROM p_occurred_at) * 1000000)::bigint,
    p_actor, p_action, p_subject, p_detail, p_trace_id, p_run_id, p_prev_hash
  )::text, 'UTF8')), 'hex')
$$;

-- Links each new row into its chain. The upsert on the chain head takes a row lock held to
-- commit, so two writers to one chain queue behind each other and writers to different
-- chains never do; a rolled-back insert rolls back the head with it.
CREATE FUNCTION audit_events_link() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  head record;
BEGIN
  INSERT INTO audit_chain_heads AS h (project_id, chain, seq, head_hash)
  VALUES (NEW.project_id, NEW.chain, 1, repeat('0', 64))
  ON CONFLICT (project_id, chain) DO UPDATE SET seq = h.seq + 1
  RETURNING h.seq, h.head_hash INTO head;

  NEW.seq := head.seq;
  NEW.prev_hash := head.head_hash;
  NEW.occurred_at := clock_timestamp();
  NEW.row_hash := audit_row_hash(NEW.project_id, NEW.chain, NEW.seq, NEW.occurred_at,
    NEW.actor, NEW.action, NEW.subject, NEW.detail, NEW.trace_id, NEW.run_id, NEW.prev_hash);

  UPDATE audit_chain_heads SET head_hash = NEW.row_hash, updated_at = now()
   WHERE project_id = NEW.project_id AND chain = NEW.chain;
  RETURN NEW;
END $$;

CREATE TRIGGER link BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_link();

SELECT awooop_make_append_only('audit_events');
SELECT awooop_make_append_only('audit_checkpoints');
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM awooop_app, awooop_platform;

-- Audit rows of the platform itself use project_id 'platform', visible to the platform role
-- only; the tenant policy never matches it because no project may be called 'platform'.
SELECT awooop_enable_tenant_rls('audit_events');
SELECT awooop_enable_tenant_rls('audit_chain_heads');
SELECT awooop_enable_tenant_rls('audit_checkpoints');

-- Folds the rows a project wrote since its last checkpoint into a new, chained checkpoint.
-- Only rows older than p_settle are taken: identity order is insert order, and a row older
-- than any transaction may live (statement and idle-in-transaction timeouts bound that) is
-- committed or gone, so no later commit can land inside a range already digested.
CREATE FUNCTION audit_checkpoint(p_project_id text, p_settle interval DEFAULT interval '5 minutes')
RETURNS audit_checkpoints LANGUAGE plpgsql AS $$
DECLARE
  last audit_checkpoints;
  cp audit_checkpoints;
  v_from bigint;
  v_to bigint;
BEGIN
  SELECT * INTO last FROM audit_checkpoints
   WHERE project_id = p_project_id ORDER BY seq DESC LIMIT 1;
  v_from := coalesce(last.to_audit_id, 0);
  SELECT max(audit_id) INTO v_to FROM audit_events
   WHERE project_id = p_project_id AND audit_id > v_from
     AND occurred_at < clock_timestamp() - p_settle;
  IF v_to IS NULL THEN
    RETURN NULL;
  END IF;

  cp.project_id := p_project_id;
  cp.seq := coalesce(last.seq, 0) + 1;
  cp.from_audit_id := v_from;
  cp.to_audit_id := v_to;
  cp.prev_hash := coalesce(last.checkpoint_hash, repeat('0', 64));
  SELECT count(*), encode(sha256(convert_to(coalesce(string_agg(row_hash, '' ORDER BY audit_id), ''), 'UTF8')), 'hex')
    INTO cp.event_count, cp.events_digest
    FROM audit_events
   WHERE project_id = p_project_id AND audit_id > v_from AND audit_id <= v_to;
  cp.checkpoint_hash := audit_checkpoint_hash(cp.project_id, cp.seq, cp.from_audit_id,
    cp.to_audit_id, cp.event_count, cp.events_digest, cp.prev_hash);

  INSERT INTO audit_checkpoints (project_id, seq, from_audit_id, to_audit_id, event_count,
                                 events_digest, prev_hash, checkpoint_hash)
  VALUES (cp.project_id, cp.seq, cp.from_audit_id, cp.to_audit_id, cp.event_count,
          cp.events_digest, cp.prev_hash, cp.checkpoint_hash)
  RETURNING * INTO cp;
  RETURN cp;
END $$;

CREATE FUNCTION audit_checkpoint_hash(
  p_project_id text, p_seq bigint, p_from bigint, p_to bigint, p_count bigint,
  p_digest text, p_prev_hash text
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(sha256(convert_to(jsonb_build_array(
    p_project_id, p_seq, p_from, p_to, p_count, p_digest, p_prev_hash)::text, 'UTF8')), 'hex')
$$;
