-- Provider health: one circuit breaker per model provider endpoint (provider + base URL), a
-- platform resource shared by every tenant whose route names that endpoint.
--
-- The row is the durable truth of the breaker and changes only on a transition (closed →
-- open → half_open → closed | open), each in one statement with its audit row on the
-- platform's chain 'provider:<endpoint_id>'. Failure counts live in Redis, not here. Every
-- runtime transition is conditional on `version`, so two processes that see the same
-- failures write one transition between them.
--
-- The runtime (awooop_app) may register an endpoint and move its breaker, never delete one,
-- and never touch a row an operator holds open (`forced`), nor make one: only the platform
-- role (the CLI, under withPlatform) may. The sweeper's role reads it for /metrics.

CREATE TABLE provider_endpoints (
  endpoint_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  provider      text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_]{0,62}$'),
  base_url      text NOT NULL CHECK (length(base_url) BETWEEN 1 AND 2048),
  state         text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
  -- Held open by an operator: no cool-down, no probe, until an operator closes or resets it.
  forced        boolean NOT NULL DEFAULT false CHECK (NOT forced OR state = 'open'),
  -- Bumped by every transition; a runtime transition names the version it saw.
  version       bigint NOT NULL DEFAULT 1,
  state_since   timestamptz NOT NULL DEFAULT now(),
  -- An open breaker admits a probe from this time on (NULL while held open or not open).
  retry_at      timestamptz,
  -- The consecutive failures that opened it last, and the code of the last of them.
  failures      integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
  last_error    text,
  opened_count  bigint NOT NULL DEFAULT 0,
  registered_by text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (provider, base_url)
);

ALTER TABLE provider_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE provider_endpoints FORCE ROW LEVEL SECURITY;
REVOKE DELETE, TRUNCATE ON provider_endpoints FROM awooop_app;
CREATE POLICY runtime_read ON provider_endpoints FOR SELECT TO awooop_app USING (true);
CREATE POLICY runtime_register ON provider_endpoints FOR INSERT TO awooop_app
  WITH CHECK (state = 'closed' AND NOT forced);
CREATE POLICY runtime_transition ON provider_endpoints FOR UPDATE TO awooop_app
  USING (NOT forced) WITH CHECK (NOT forced);
CREATE POLICY platform_access ON provider_endpoints TO awooop_platform USING (true) WITH CHECK (true);
GRANT SELECT (endpoint_id, provider, base_url, state, forced, state_since, failures,
              opened_count) ON provider_endpoints TO awooop_sweeper;
CREATE POLICY sweeper_scan ON provider_endpoints FOR SELECT TO awooop_sweeper USING (true);

-- The runtime writes the audit rows of its own transitions on the platform's provider
-- chains, and nothing else of the platform's: no read of audit rows (the insert has no
-- RETURNING), the chain heads of those chains only (the link trigger upserts them).
CREATE POLICY provider_health_audit ON audit_events FOR INSERT TO awooop_app
  WITH CHECK (project_id = 'platform' AND chain LIKE 'provider:%' AND action LIKE 'provider.%');
CREATE POLICY provider_health_heads ON audit_chain_heads TO awooop_app
  USING (project_id = 'platform' AND chain LIKE 'provider:%')
  WITH CHECK (project_id = 'platform' AND chain LIKE 'provider:%');
