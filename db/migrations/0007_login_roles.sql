-- Login roles: every process connects as a role that can become only what that process needs.
--
-- Before, the pools connected as the owner (a superuser in development) and switched to
-- awooop_app by a startup option, so SQL on a runtime connection could SET ROLE to
-- awooop_platform, the owner or postgres and see every tenant. Now:
--
--   awooop_runtime         web and workers: may become awooop_app only
--   awooop_sweeper_login   the sweeper and the metrics scrape: awooop_app and awooop_sweeper
--   awooop_platform_login  the awooop CLI: awooop_app and awooop_platform (withPlatform)
--
-- They are NOINHERIT: a login role holds no table privilege of its own, so SET ROLE NONE
-- leaves a session that can read nothing. None is a superuser, BYPASSRLS, CREATEROLE or a
-- member of the owner, so SET ROLE to any other role and SET SESSION AUTHORIZATION fail with
-- permission denied. Passwords are not set here: with password authentication the operator
-- sets them (ALTER ROLE … PASSWORD) and hands each URL to its process.
--
-- Roles are cluster-wide and other databases (and concurrent migrations) share them, so each
-- creation and grant tolerates one that is already there; nothing here drops or alters a role.

DO $$
BEGIN
  CREATE ROLE awooop_runtime LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  CREATE ROLE awooop_sweeper_login LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  CREATE ROLE awooop_platform_login LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  GRANT awooop_app TO awooop_runtime;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  GRANT awooop_app, awooop_sweeper TO awooop_sweeper_login;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  GRANT awooop_app, awooop_platform TO awooop_platform_login;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- A login role made elsewhere (by an operator, before this ran) must be no stronger than the
-- ones above: refuse to go on if one could reach another role by itself (superuser,
-- CREATEROLE, BYPASSRLS, replication) or is a member of a role it should not become.
DO $$
DECLARE
  strong text;
BEGIN
  SELECT string_agg(r.rolname, ', ') INTO strong
    FROM pg_roles r
   WHERE r.rolname IN ('awooop_runtime', 'awooop_sweeper_login', 'awooop_platform_login')
     AND (r.rolsuper OR r.rolcreaterole OR r.rolbypassrls OR r.rolreplication
          OR pg_has_role(r.oid, current_user, 'MEMBER')
          OR (r.rolname <> 'awooop_platform_login' AND pg_has_role(r.oid, 'awooop_platform', 'MEMBER'))
          OR (r.rolname = 'awooop_runtime' AND pg_has_role(r.oid, 'awooop_sweeper', 'MEMBER')));
  IF strong IS NOT NULL THEN
    RAISE EXCEPTION 'login role(s) % can reach more than their own roles; fix them (ALTER ROLE, REVOKE) and migrate again', strong;
  END IF;
END $$;

-- Before Postgres 15 every role may create objects in public; a runtime that could would be
-- able to plant functions that the owner's triggers and migrations resolve by name.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- 'platform' names the platform's own audit rows (written under awooop_platform). withProject
-- refuses it, but SQL on a runtime connection can set app.project_id itself: the tenant
-- policy must never match 'platform', whatever the setting says.
CREATE OR REPLACE FUNCTION awooop_current_project() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT nullif(nullif(current_setting('app.project_id', true), ''), 'platform')
$$;
