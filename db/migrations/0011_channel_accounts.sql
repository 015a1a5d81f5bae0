-- Channel accounts as the ChannelManager runs them: one status snapshot per account of every
-- active channel contract, and the history of its state changes.
--
-- desired_state is the operator's (start / stop); actual_state is what the channels process
-- last reported for the account (starting, running, reconnecting, stopped, error). Counts and
-- the last inbound / outbound times are kept in Redis where messages pass and flushed here
-- every few seconds by the manager; errors and state changes are written when they happen.
CREATE TABLE channel_accounts (
  project_id         text NOT NULL REFERENCES projects (project_id),
  account_id         text NOT NULL CHECK (account_id ~ '^[a-z][a-z0-9_-]{0,62}$'),
  channel            text NOT NULL,
  desired_state      text NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
  desired_by         text,
  desired_at         timestamptz,
  -- bumped by each restart request: the manager reopens an account whose number moved
  restart_seq        integer NOT NULL DEFAULT 0,
  actual_state       text NOT NULL DEFAULT 'stopped'
                     CHECK (actual_state IN ('starting', 'running', 'reconnecting', 'stopped', 'error')),
  state_changed_at   timestamptz NOT NULL DEFAULT now(),
  -- the contract revision the account runs (null once its contract is gone)
  revision_id        uuid,
  revision_version   integer,
  contract_active    boolean NOT NULL DEFAULT true,
  registered_url     text,
  registered_at      timestamptz,
  last_inbound_at    timestamptz,
  last_outbound_at   timestamptz,
  last_error_code    text,
  last_error_message text,
  last_error_at      timestamptz,
  inbound_count      bigint NOT NULL DEFAULT 0,
  outbound_count     bigint NOT NULL DEFAULT 0,
  error_count        bigint NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, account_id)
);
SELECT awooop_enable_tenant_rls('channel_accounts');

-- One row per change of an account's actual state, or of its desired state (an operator's
-- start / stop / restart): the snapshot's history.
CREATE TABLE channel_account_transitions (
  transition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project_id    text NOT NULL,
  account_id    text NOT NULL,
  kind          text NOT NULL CHECK (kind IN ('actual', 'desired', 'restart')),
  from_state    text,
  to_state      text NOT NULL,
  revision_id   uuid,
  reason        text NOT NULL,
  actor         text NOT NULL,
  detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
  at            timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (project_id, account_id) REFERENCES channel_accounts (project_id, account_id)
);
CREATE INDEX channel_account_transitions_account
  ON channel_account_transitions (project_id, account_id, transition_id);
SELECT awooop_make_append_only('channel_account_transitions');
SELECT awooop_enable_tenant_rls('channel_account_transitions');

-- The manager's scan across projects, the sweeper's "is this account stopped?" and the
-- metrics scrape read ids, states and counts, nothing else: the sweeper's column-limited role.
-- Bodies of contracts are read per project, under row-level security.
GRANT SELECT (project_id, kind, name, revision_id) ON contract_active TO awooop_sweeper;
GRANT SELECT (account_id) ON runs TO awooop_sweeper;
CREATE POLICY sweeper_scan ON contract_active FOR SELECT TO awooop_sweeper USING (true);
GRANT SELECT (project_id, account_id, channel, desired_state, restart_seq, actual_state,
              revision_id, contract_active, inbound_count, outbound_count, error_count)
  ON channel_accounts TO awooop_sweeper;
CREATE POLICY sweeper_scan ON channel_accounts FOR SELECT TO awooop_sweeper USING (true);

-- Prompt reconciling: an activation or rollback of a channel contract, and an operator's
-- start / stop / restart, notify the channels process (which also polls, for a notification
-- sent while it was not listening).
CREATE FUNCTION awooop_notify_channels() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'contract_active' THEN
    IF coalesce(NEW.kind, OLD.kind) <> 'channel' THEN
      RETURN NULL;
    END IF;
  END IF;
  PERFORM pg_notify('awooop_channels', coalesce(NEW.project_id, OLD.project_id));
  RETURN NULL;
END $$;
CREATE TRIGGER notify_channels AFTER INSERT OR UPDATE OR DELETE ON contract_active
  FOR EACH ROW EXECUTE FUNCTION awooop_notify_channels();
CREATE TRIGGER notify_channels AFTER UPDATE OF desired_state, restart_seq ON channel_accounts
  FOR EACH ROW EXECUTE FUNCTION awooop_notify_channels();
