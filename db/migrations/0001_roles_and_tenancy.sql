-- Roles and the tenancy helpers every later migration uses.
--
-- The runtime connects with the session role awooop_app, so row-level security applies to
-- every query it runs; awooop_platform is the explicit cross-tenant role, entered only through
-- withPlatform (which audits the entry). Roles are cluster-wide, so creation tolerates a role
-- that another database (or a concurrent migration) already made.

DO $$
BEGIN
  CREATE ROLE awooop_app NOLOGIN NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  CREATE ROLE awooop_platform NOLOGIN NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- A non-superuser owner must be a member to SET ROLE; a superuser already may.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT awooop_app, awooop_platform TO %I', current_user);
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

GRANT USAGE ON SCHEMA public TO awooop_app, awooop_platform;
-- readiness checks ask the runtime's own connection whether migrations are current
GRANT SELECT ON schema_migrations TO awooop_app, awooop_platform;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO awooop_app, awooop_platform;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO awooop_app, awooop_platform;

-- The project the current transaction acts for; NULL when none was set (then no tenant row
-- is visible: fail closed).
CREATE FUNCTION awooop_current_project() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('app.project_id', true), '')
$$;

-- The standard two policies for a tenant-scoped table: awooop_app sees and writes only the
-- rows of awooop_current_project(); awooop_platform sees all. FORCE makes a non-superuser
-- owner obey them too.
CREATE FUNCTION awooop_enable_tenant_rls(target regclass, key_column text DEFAULT 'project_id')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
  EXECUTE format(
    'CREATE POLICY tenant_isolation ON %s TO awooop_app USING (%I = awooop_current_project()) WITH CHECK (%I = awooop_current_project())',
    target, key_column, key_column);
  EXECUTE format(
    'CREATE POLICY platform_access ON %s TO awooop_platform USING (true) WITH CHECK (true)',
    target);
END $$;

-- Append-only tables refuse UPDATE, DELETE and TRUNCATE in the database itself, whatever
-- code path (or hand-typed SQL) tries.
CREATE FUNCTION awooop_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'AW001';
END $$;

CREATE FUNCTION awooop_make_append_only(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format(
    'CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION awooop_refuse_change()',
    target);
  EXECUTE format(
    'CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION awooop_refuse_change()',
    target);
END $$;

CREATE TABLE projects (
  project_id   text PRIMARY KEY
               CHECK (project_id ~ '^[a-z][a-z0-9_-]{1,62}$' AND project_id <> 'platform'),
  display_name text NOT NULL,
  status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
SELECT awooop_enable_tenant_rls('projects');
