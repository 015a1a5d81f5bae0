-- Login roles may be members of exactly the roles their process needs, nothing else.
--
-- 0007 refused a login role made elsewhere only for a few memberships (the owner, the platform
-- role, the sweeper role for the runtime). A login role an operator had also granted, say,
-- pg_read_all_data, pg_write_server_files or another application's role went through, and SET
-- ROLE to it would leave row-level security behind. This refuses any membership outside each
-- login role's own set:
--
--   awooop_runtime         awooop_app
--   awooop_sweeper_login   awooop_app, awooop_sweeper
--   awooop_platform_login  awooop_app, awooop_platform
--
-- The check is a function so that it can be asked again (and tested with a throwaway role);
-- the migration stops when any login role overreaches.

CREATE OR REPLACE FUNCTION awooop_login_role_overreach(login name, allowed name[]) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT nullif(concat_ws('; ',
           (SELECT 'attributes ' || concat_ws(', ',
                     CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                     CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
                     CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
                     CASE WHEN r.rolreplication THEN 'REPLICATION' END)
              FROM pg_roles r
             WHERE r.rolname = login
               AND (r.rolsuper OR r.rolcreaterole OR r.rolbypassrls OR r.rolreplication)),
           (SELECT 'member of ' || string_agg(g.rolname, ', ' ORDER BY g.rolname)
              FROM pg_auth_members m
              JOIN pg_roles g ON g.oid = m.roleid
              JOIN pg_roles r ON r.oid = m.member
             WHERE r.rolname = login AND g.rolname <> ALL (allowed))), '')
$$;

REVOKE ALL ON FUNCTION awooop_login_role_overreach(name, name[]) FROM PUBLIC;

DO $$
DECLARE
  problems text;
BEGIN
  SELECT string_agg(l.login || ' (' || o.problem || ')', ', ') INTO problems
    FROM (VALUES ('awooop_runtime'::name, ARRAY['awooop_app']::name[]),
                 ('awooop_sweeper_login', ARRAY['awooop_app', 'awooop_sweeper']::name[]),
                 ('awooop_platform_login', ARRAY['awooop_app', 'awooop_platform']::name[])) AS l(login, allowed)
    CROSS JOIN LATERAL (SELECT awooop_login_role_overreach(l.login, l.allowed) AS problem) o
   WHERE o.problem IS NOT NULL;
  IF problems IS NOT NULL THEN
    RAISE EXCEPTION 'login role(s) can reach more than their own roles: %; fix them (ALTER ROLE, REVOKE) and migrate again', problems;
  END IF;
END $$;
