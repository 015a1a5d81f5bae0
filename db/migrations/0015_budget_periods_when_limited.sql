-- A project's day and month rows are kept only where a project-level limit reads them. Until
-- now every model step of every run locked its project's two period rows, twice (reserve and
-- settle), although a project with no day or month limit never reads them: under load one
-- project's steps queued on those two rows. Now:
--
-- * A reservation checked against no project-level limit takes no row lock: only a shared
--   advisory lock on the project (shared holders never wait for each other) and an advisory
--   lock on its run, so two tries of one run's steps still see each other's holds.
-- * A reservation checked against a day or month limit locks the period rows as before. When
--   a row is missing (the first limited step of the period, or limits newly applied), it is
--   created from the period's reservations under the project's advisory lock held
--   exclusively, which waits until every unlimited reservation, settle or release in flight
--   has committed, so the new row counts them all.
-- * Settles and releases update the period rows that exist (none for a project that never
--   had a limit in the period) and hold the shared project lock too.
--
-- Usage reports never read the period rows (they sum the reservations), so nothing they show
-- changes. The lock keys: class `hashtext('awooop:budget')` with the project's hash for the
-- project lock, class `hashtext('awooop:budget-run')` with the run's hash for the run lock
-- (two-key advisory locks, a key space apart from the one-key locks elsewhere). Every caller
-- takes the run lock, then the project lock, then the day row, then the month row.

CREATE OR REPLACE FUNCTION budget_reserve(
  p_project text, p_run uuid, p_key text, p_kind text, p_agent text, p_subject text,
  p_day date, p_tokens bigint, p_usd numeric, p_settled boolean, p_unpriced boolean,
  p_run_tokens bigint, p_run_usd numeric, p_run_tool_calls integer,
  p_day_tokens bigint, p_day_usd numeric, p_month_tokens bigint, p_month_usd numeric
) RETURNS TABLE (outcome text, limit_name text)
LANGUAGE plpgsql AS $$
DECLARE
  v_day text := 'day:' || to_char(p_day, 'YYYY-MM-DD');
  v_month text := 'month:' || to_char(p_day, 'YYYY-MM');
  v_month_start date := date_trunc('month', p_day)::date;
  v_limited boolean := p_day_tokens IS NOT NULL OR p_day_usd IS NOT NULL
                       OR p_month_tokens IS NOT NULL OR p_month_usd IS NOT NULL;
  v_status text;
  d budget_periods;
  m budget_periods;
  r record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('awooop:budget-run'), hashtext(p_run::text));
  IF v_limited THEN
    IF (SELECT count(*) FROM budget_periods
         WHERE project_id = p_project AND period IN (v_day, v_month)) < 2 THEN
      -- Every unlimited holder of the shared lock has committed once this returns, so the
      -- sums below see all of the period's reservations.
      PERFORM pg_advisory_xact_lock(hashtext('awooop:budget'), hashtext(p_project));
      INSERT INTO budget_periods (project_id, period, tokens_reserved, tokens_spent,
                                  usd_reserved, usd_spent)
      SELECT p_project, p.period,
             coalesce(sum(br.tokens_reserved) FILTER (WHERE br.status = 'reserved'), 0),
             coalesce(sum(br.input_tokens + br.output_tokens) FILTER (WHERE br.status = 'settled'), 0),
             coalesce(sum(br.usd_reserved) FILTER (WHERE br.status = 'reserved'), 0),
             coalesce(sum(br.usd) FILTER (WHERE br.status = 'settled'), 0)
        FROM (VALUES (v_day, p_day, p_day),
                     (v_month, v_month_start, (v_month_start + interval '1 month' - interval '1 day')::date))
             AS p (period, first_day, last_day)
        LEFT JOIN budget_reservations br
          ON br.project_id = p_project AND br.day BETWEEN p.first_day AND p.last_day
       GROUP BY p.period
      ON CONFLICT DO NOTHING;
    END IF;
    SELECT * INTO d FROM budget_periods WHERE project_id = p_project AND period = v_day FOR UPDATE;
    SELECT * INTO m FROM budget_periods WHERE project_id = p_project AND period = v_month FOR UPDATE;
  ELSE
    PERFORM pg_advisory_xact_lock_shared(hashtext('awooop:budget'), hashtext(p_project));
  END IF;
  -- Read after the run lock: a twin of this call that held it has committed its row by now.
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
  -- A tool call (settled at once) spends nothing from the periods. The rows that exist take
  -- the hold (a project with no period row has had no limit this period: nothing reads it).
  IF NOT p_settled THEN
    UPDATE budget_periods SET tokens_reserved = tokens_reserved + p_tokens,
                              usd_reserved = usd_reserved + p_usd, updated_at = now()
     WHERE project_id = p_project AND period IN (v_day, v_month);
  END IF;
  RETURN QUERY SELECT 'reserved', NULL::text;
END $$;

CREATE OR REPLACE FUNCTION budget_settle(
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
  -- A period row being created waits for this settle to commit, and counts it.
  PERFORM pg_advisory_xact_lock_shared(hashtext('awooop:budget'), hashtext(p_project));
  -- The period rows that exist first, in the order budget_reserve takes them.
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

CREATE OR REPLACE FUNCTION budget_release_run(p_project text, p_run uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  res budget_reservations;
  n integer := 0;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM budget_reservations WHERE run_id = p_run AND status = 'reserved') THEN
    RETURN 0;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('awooop:budget-run'), hashtext(p_run::text));
  PERFORM pg_advisory_xact_lock_shared(hashtext('awooop:budget'), hashtext(p_project));
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
