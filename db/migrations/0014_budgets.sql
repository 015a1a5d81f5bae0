-- Budgets, reserved before spending. Each model step and tool call of a run first reserves
-- an upper bound of what it may cost (one row per (run, step key), so a retried or resumed
-- step finds its own row and never reserves twice), and settles it from the provider's
-- reported usage. The project's per-day and per-month totals live in one row per period,
-- updated under a row lock by the same statement that inserts the reservation, so runs of one
-- project running at once cannot together pass a limit. Periods are UTC days and months.

-- One row per project and period (`day:YYYY-MM-DD`, `month:YYYY-MM`): what is held by open
-- reservations and what settled steps spent.
CREATE TABLE budget_periods (
  project_id      text NOT NULL REFERENCES projects (project_id),
  period          text NOT NULL CHECK (period ~ '^(day:\d{4}-\d{2}-\d{2}|month:\d{4}-\d{2})$'),
  tokens_reserved bigint NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0),
  tokens_spent    bigint NOT NULL DEFAULT 0 CHECK (tokens_spent >= 0),
  usd_reserved    numeric(24, 12) NOT NULL DEFAULT 0 CHECK (usd_reserved >= 0),
  usd_spent       numeric(24, 12) NOT NULL DEFAULT 0 CHECK (usd_spent >= 0),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, period)
);
SELECT awooop_enable_tenant_rls('budget_periods');

-- One row per model step (`model:<step index>`) or tool call (`tool:<model step>:<call>`) of a
-- run: `reserved` holds its upper bound in its day's and month's rows; `settled` has moved
-- to spent what the provider reported; `released` gave the hold back unspent (the run ended
-- before the step settled). A tool call costs no tokens: it is recorded settled at once, so
-- it counts against the run's tool-call limit and shows in the usage report.
CREATE TABLE budget_reservations (
  project_id      text NOT NULL REFERENCES projects (project_id),
  run_id          uuid NOT NULL REFERENCES runs (run_id),
  step_key        text NOT NULL CHECK (step_key ~ '^(model:\d+|tool:\d+:\d+)$'),
  kind            text NOT NULL CHECK (kind IN ('model', 'tool')),
  agent           text NOT NULL,
  -- the model that was asked (provider/model): the primary at reserve, the one that answered
  -- at settle; the tool id for a tool call
  subject         text NOT NULL,
  day             date NOT NULL,
  status          text NOT NULL CHECK (status IN ('reserved', 'settled', 'released')),
  tokens_reserved bigint NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0),
  usd_reserved    numeric(24, 12) NOT NULL DEFAULT 0 CHECK (usd_reserved >= 0),
  input_tokens    bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
  output_tokens   bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
  usd             numeric(24, 12) NOT NULL DEFAULT 0 CHECK (usd >= 0),
  -- the model had no price in the policy (only possible for a revision stored before prices
  -- were required): its tokens count, its money does not
  unpriced        boolean NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  settled_at      timestamptz,
  PRIMARY KEY (run_id, step_key)
);
CREATE INDEX budget_reservations_project_day ON budget_reservations (project_id, day);
CREATE INDEX budget_reservations_open ON budget_reservations (run_id) WHERE status = 'reserved';
SELECT awooop_enable_tenant_rls('budget_reservations');

-- A project's owners are told once per period and limit that its spend passed the alert
-- percentage: the key admits one row.
CREATE TABLE budget_alerts (
  project_id  text NOT NULL REFERENCES projects (project_id),
  period      text NOT NULL,
  limit_name  text NOT NULL,
  percent     integer NOT NULL,
  spent       numeric(24, 12) NOT NULL,
  limit_value numeric(24, 12) NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, period, limit_name)
);
SELECT awooop_enable_tenant_rls('budget_alerts');
-- /metrics counts alerts on the sweeper's login.
GRANT SELECT (project_id, period, limit_name) ON budget_alerts TO awooop_sweeper;
CREATE POLICY sweeper_scan ON budget_alerts FOR SELECT TO awooop_sweeper USING (true);

-- Reserves one step. Limits are passed by the caller from the run's pinned contracts (null:
-- no such limit). Returns one row: `outcome` is `reserved` (new hold), `held` (this step's
-- earlier hold, reused: a retried or resumed step), `settled` (this step's row is final
-- already; a released one is reserved anew), or `exceeded` with `limit_name` the limit it would pass (nothing
-- written). Everything happens under the project's day and month row locks (taken in that
-- order by every caller, so two reservations never deadlock), so concurrent runs see each
-- other's holds.
CREATE FUNCTION budget_reserve(
  p_project text, p_run uuid, p_key text, p_kind text, p_agent text, p_subject text,
  p_day date, p_tokens bigint, p_usd numeric, p_settled boolean, p_unpriced boolean,
  p_run_tokens bigint, p_run_usd numeric, p_run_tool_calls integer,
  p_day_tokens bigint, p_day_usd numeric, p_month_tokens bigint, p_month_usd numeric
) RETURNS TABLE (outcome text, limit_name text)
LANGUAGE plpgsql AS $$
DECLARE
  v_day text := 'day:' || to_char(p_day, 'YYYY-MM-DD');
  v_month text := 'month:' || to_char(p_day, 'YYYY-MM');
  v_status text;
  d budget_periods;
  m budget_periods;
  r record;
BEGIN
  INSERT INTO budget_periods (project_id, period) VALUES (p_project, v_day), (p_project, v_month)
    ON CONFLICT DO NOTHING;
  SELECT * INTO d FROM budget_periods WHERE project_id = p_project AND period = v_day FOR UPDATE;
  SELECT * INTO m FROM budget_periods WHERE project_id = p_project AND period = v_month FOR UPDATE;
  -- Read after the locks: a twin of this call that held them has committed its row by now.
  SELECT status INTO v_status FROM budget_reservations WHERE run_id = p_run AND step_key = p_key;
  IF FOUND AND v_status = 'released' THEN
    -- The run ended holding this step and was retried (`runs retry`): the step holds, and is
    -- checked, again. A released row carries no spend, so nothing is lost with it.
    DELETE FROM budget_reservations WHERE run_id = p_run AND step_key = p_key;
  ELSIF FOUND THEN
    RETURN QUERY SELECT CASE v_status WHEN 'reserved' THEN 'held' ELSE v_status END, NULL::text;
    RETURN;
  END IF;
  SELECT coalesce(sum(CASE WHEN status = 'reserved' THEN tokens_reserved
                           WHEN status = 'settled' THEN input_tokens + output_tokens END), 0) AS tokens,
         coalesce(sum(CASE WHEN status = 'reserved' THEN usd_reserved
                           WHEN status = 'settled' THEN usd END), 0) AS usd,
         count(*) FILTER (WHERE kind = 'tool') AS tool_calls
    INTO r FROM budget_reservations WHERE run_id = p_run;
  IF p_run_tokens IS NOT NULL AND r.tokens + p_tokens > p_run_tokens THEN
    RETURN QUERY SELECT 'exceeded', 'perRunTokens'; RETURN;
  ELSIF p_run_usd IS NOT NULL AND r.usd + p_usd > p_run_usd THEN
    RETURN QUERY SELECT 'exceeded', 'perRunUsd'; RETURN;
  ELSIF p_run_tool_calls IS NOT NULL AND p_kind = 'tool' AND r.tool_calls + 1 > p_run_tool_calls THEN
    RETURN QUERY SELECT 'exceeded', 'perRunToolCalls'; RETURN;
  ELSIF p_day_tokens IS NOT NULL AND d.tokens_reserved + d.tokens_spent + p_tokens > p_day_tokens THEN
    RETURN QUERY SELECT 'exceeded', 'dailyTokens'; RETURN;
  ELSIF p_day_usd IS NOT NULL AND d.usd_reserved + d.usd_spent + p_usd > p_day_usd THEN
    RETURN QUERY SELECT 'exceeded', 'dailyUsd'; RETURN;
  ELSIF p_month_tokens IS NOT NULL AND m.tokens_reserved + m.tokens_spent + p_tokens > p_month_tokens THEN
    RETURN QUERY SELECT 'exceeded', 'monthlyTokens'; RETURN;
  ELSIF p_month_usd IS NOT NULL AND m.usd_reserved + m.usd_spent + p_usd > p_month_usd THEN
    RETURN QUERY SELECT 'exceeded', 'monthlyUsd'; RETURN;
  END IF;
  INSERT INTO budget_reservations (project_id, run_id, step_key, kind, agent, subject, day, status,
                                   tokens_reserved, usd_reserved, unpriced, settled_at)
    VALUES (p_project, p_run, p_key, p_kind, p_agent, p_subject, p_day,
            CASE WHEN p_settled THEN 'settled' ELSE 'reserved' END,
            p_tokens, p_usd, p_unpriced, CASE WHEN p_settled THEN now() END);
  -- A tool call (settled at once) spends nothing from the periods.
  IF NOT p_settled THEN
    UPDATE budget_periods SET tokens_reserved = tokens_reserved + p_tokens,
                              usd_reserved = usd_reserved + p_usd, updated_at = now()
     WHERE project_id = p_project AND period IN (v_day, v_month);
  END IF;
  RETURN QUERY SELECT 'reserved', NULL::text;
END $$;

-- Settles one step from the provider's usage: its hold leaves the periods' reserved totals
-- and the actual spend enters their spent totals. Only a `reserved` row is settled, so a
-- second call changes nothing. Returns the day's and month's totals after it (for the alert),
-- or no row when there was nothing to settle.
CREATE FUNCTION budget_settle(
  p_project text, p_run uuid, p_key text, p_subject text,
  p_input bigint, p_output bigint, p_usd numeric, p_unpriced boolean
) RETURNS TABLE (out_period text, out_tokens bigint, out_usd numeric)
LANGUAGE plpgsql AS $$
DECLARE
  res budget_reservations;
  v_day text;
  v_month text;
BEGIN
  SELECT * INTO res FROM budget_reservations WHERE run_id = p_run AND step_key = p_key;
  IF NOT FOUND OR res.status <> 'reserved' THEN RETURN; END IF;
  v_day := 'day:' || to_char(res.day, 'YYYY-MM-DD');
  v_month := 'month:' || to_char(res.day, 'YYYY-MM');
  -- The period rows first, in the order budget_reserve takes them.
  PERFORM 1 FROM budget_periods bp WHERE bp.project_id = p_project AND bp.period IN (v_day, v_month)
    ORDER BY bp.period FOR UPDATE;
  UPDATE budget_reservations br SET status = 'settled', subject = p_subject, input_tokens = p_input,
         output_tokens = p_output, usd = p_usd, unpriced = p_unpriced, settled_at = now()
   WHERE br.run_id = p_run AND br.step_key = p_key AND br.status = 'reserved';
  IF NOT FOUND THEN RETURN; END IF;
  RETURN QUERY
  UPDATE budget_periods p
     SET tokens_reserved = p.tokens_reserved - res.tokens_reserved,
         usd_reserved = p.usd_reserved - res.usd_reserved,
         tokens_spent = p.tokens_spent + p_input + p_output,
         usd_spent = p.usd_spent + p_usd, updated_at = now()
   WHERE p.project_id = p_project AND p.period IN (v_day, v_month)
  RETURNING p.period, p.tokens_spent, p.usd_spent;
END $$;

-- Gives back every hold a run still has (it ended before those steps settled). Returns how
-- many were released; a second call finds none.
CREATE FUNCTION budget_release_run(p_project text, p_run uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  res budget_reservations;
  n integer := 0;
BEGIN
  FOR res IN SELECT * FROM budget_reservations
              WHERE run_id = p_run AND status = 'reserved' ORDER BY step_key LOOP
    PERFORM 1 FROM budget_periods
      WHERE project_id = p_project
        AND period IN ('day:' || to_char(res.day, 'YYYY-MM-DD'), 'month:' || to_char(res.day, 'YYYY-MM'))
      ORDER BY period FOR UPDATE;
    UPDATE budget_reservations SET status = 'released', settled_at = now()
     WHERE run_id = p_run AND step_key = res.step_key AND status = 'reserved';
    IF FOUND THEN
      UPDATE budget_periods SET tokens_reserved = tokens_reserved - res.tokens_reserved,
                                usd_reserved = usd_reserved - res.usd_reserved, updated_at = now()
       WHERE project_id = p_project
         AND period IN ('day:' || to_char(res.day, 'YYYY-MM-DD'), 'month:' || to_char(res.day, 'YYYY-MM'));
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END $$;
