-- The control plane: contract revisions, the active pointers that make one revision visible
-- to the runtime, their history, content-addressed artifacts and per-flow migration modes.

CREATE TABLE contract_revisions (
  revision_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id   text NOT NULL REFERENCES projects (project_id),
  kind         text NOT NULL
               CHECK (kind IN ('project', 'agent', 'mcp_gateway', 'policy', 'runtime', 'channel')),
  name         text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
  version      integer NOT NULL CHECK (version > 0),
  status       text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
  body         jsonb NOT NULL,
  body_hash    text NOT NULL CHECK (body_hash ~ '^[0-9a-f]{64}$'),
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_by text,
  published_at timestamptz,
  CHECK ((status = 'published') = (published_at IS NOT NULL AND published_by IS NOT NULL)),
  UNIQUE (project_id, kind, name, version),
  -- the target of contract_active's foreign key, which pins status = 'published'
  UNIQUE (project_id, kind, name, revision_id, status)
);
-- at most one open draft per contract
CREATE UNIQUE INDEX contract_revisions_one_draft ON contract_revisions (project_id, kind, name)
  WHERE status = 'draft';
CREATE INDEX contract_revisions_hash ON contract_revisions (project_id, kind, name, body_hash);

-- A published revision is immutable and undeletable; a draft may change its body and
-- become published, and nothing else about it may change.
CREATE FUNCTION contract_revisions_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'published' THEN
    RAISE EXCEPTION 'contract revision % is published and append-only: % refused',
      OLD.revision_id, TG_OP USING ERRCODE = 'AW001';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  IF (NEW.revision_id, NEW.project_id, NEW.kind, NEW.name, NEW.version, NEW.created_by, NEW.created_at)
     IS DISTINCT FROM
     (OLD.revision_id, OLD.project_id, OLD.kind, OLD.name, OLD.version, OLD.created_by, OLD.created_at) THEN
    RAISE EXCEPTION 'a draft revision may change only its body and status' USING ERRCODE = 'AW001';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER guard BEFORE UPDATE OR DELETE ON contract_revisions
  FOR EACH ROW EXECUTE FUNCTION contract_revisions_guard();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON contract_revisions
  FOR EACH STATEMENT EXECUTE FUNCTION awooop_refuse_change();
SELECT awooop_enable_tenant_rls('contract_revisions');

-- The active pointer: the only way a revision becomes visible to the runtime. The foreign
-- key includes status, so a pointer can only ever name a published revision of the same
-- contract.
CREATE TABLE contract_active (
  project_id   text NOT NULL,
  kind         text NOT NULL,
  name         text NOT NULL,
  revision_id  uuid NOT NULL,
  status       text NOT NULL DEFAULT 'published' CHECK (status = 'published'),
  activated_by text NOT NULL,
  activated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, kind, name),
  FOREIGN KEY (project_id, kind, name, revision_id, status)
    REFERENCES contract_revisions (project_id, kind, name, revision_id, status)
);
SELECT awooop_enable_tenant_rls('contract_active');

CREATE TABLE contract_activations (
  activation_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project_id           text NOT NULL,
  kind                 text NOT NULL,
  name                 text NOT NULL,
  revision_id          uuid NOT NULL REFERENCES contract_revisions (revision_id),
  previous_revision_id uuid REFERENCES contract_revisions (revision_id),
  action               text NOT NULL CHECK (action IN ('activate', 'rollback')),
  actor                text NOT NULL,
  trace_id             text,
  activated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contract_activations_contract
  ON contract_activations (project_id, kind, name, activation_id DESC);
SELECT awooop_make_append_only('contract_activations');
SELECT awooop_enable_tenant_rls('contract_activations');

-- Prompts, JSON Schemas, evals and replays by ref + SHA-256. Content is immutable: a new
-- version is a new sha256 under the same ref.
CREATE TABLE artifact_refs (
  project_id text NOT NULL REFERENCES projects (project_id),
  ref        text NOT NULL CHECK (length(ref) BETWEEN 1 AND 500),
  sha256     text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  kind       text NOT NULL CHECK (kind IN ('prompt', 'json_schema', 'eval', 'replay')),
  media_type text NOT NULL,
  content    bytea NOT NULL,
  size_bytes integer GENERATED ALWAYS AS (octet_length(content)) STORED,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, ref, sha256)
);
CREATE TRIGGER immutable BEFORE UPDATE ON artifact_refs
  FOR EACH ROW EXECUTE FUNCTION awooop_refuse_change();
SELECT awooop_enable_tenant_rls('artifact_refs');

CREATE TABLE project_migration_state (
  project_id text NOT NULL REFERENCES projects (project_id),
  flow       text NOT NULL CHECK (flow ~ '^[a-z][a-z0-9_-]{0,62}$'),
  mode       text NOT NULL
             CHECK (mode IN ('shadow', 'canary', 'read_only', 'suggest', 'auto_remediate')),
  canary     jsonb NOT NULL DEFAULT '{}'::jsonb,
  updated_by text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, flow)
);
SELECT awooop_enable_tenant_rls('project_migration_state');
