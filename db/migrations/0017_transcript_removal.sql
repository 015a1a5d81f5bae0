-- Conversation text that may be removed once a run has ended: at once for a policy with
-- `privacy.storeTranscripts: false`, and after `dataBoundary.retentionDays` by the sweeper's
-- retention pass. Removal blanks the text in place — the rows, their ids, states, digests
-- and times stay, and so does every audit row (which never held the text) — so the audit
-- chain and `awooop audit verify` are untouched by it.

-- When a run's text was removed (null: still stored). The history a prompt carries skips such
-- runs, and the retention pass finds what is left by it.
ALTER TABLE runs ADD COLUMN text_removed_at timestamptz;
CREATE INDEX runs_text_kept ON runs (project_id, completed_at) WHERE text_removed_at IS NULL;

-- An event with its words taken out: the message text emptied, its subject, the attachments'
-- names and the sender's display name dropped; ids, channel, conversation and references kept.
CREATE FUNCTION awooop_blank_event(b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_set(
    jsonb_set(b #- '{message,subject}' #- '{sender,displayName}', '{message,text}', '""'),
    '{message,attachments}',
    coalesce((SELECT jsonb_agg(a - 'name')
                FROM jsonb_array_elements(coalesce(b #> '{message,attachments}', '[]')) a),
             '[]'))
$$;

-- A checkpoint with its words taken out: a model step's text and its calls' arguments, a tool
-- step's content. Provider, model, usage, tool ids and statuses stay.
CREATE FUNCTION awooop_blank_step(p_kind text, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE p_kind
    WHEN 'model' THEN jsonb_set(b || '{"text": ""}', '{toolCalls}',
      coalesce((SELECT jsonb_agg(c || '{"arguments": {}}')
                  FROM jsonb_array_elements(coalesce(b -> 'toolCalls', '[]')) c), '[]'))
    ELSE b || '{"content": ""}'
  END
$$;

-- conversation_events and run_steps stay append-only except for one change: replacing a row's
-- body with its blanked form, every other column unchanged. DELETE and TRUNCATE are refused
-- as before.
CREATE FUNCTION awooop_refuse_change_but_blanking() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_blank jsonb;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF TG_TABLE_NAME = 'conversation_events' THEN
      v_blank := awooop_blank_event(OLD.body);
    ELSE
      v_blank := awooop_blank_step(OLD.kind, OLD.body);
    END IF;
    IF to_jsonb(NEW) - 'body' = to_jsonb(OLD) - 'body' AND NEW.body = v_blank THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'AW001';
END $$;

DROP TRIGGER append_only ON conversation_events;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON conversation_events
  FOR EACH ROW EXECUTE FUNCTION awooop_refuse_change_but_blanking();
DROP TRIGGER append_only ON run_steps;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON run_steps
  FOR EACH ROW EXECUTE FUNCTION awooop_refuse_change_but_blanking();

-- Removes the text of the given runs that have ended (COMPLETED or FAILED) and still hold it,
-- in every table that holds message text: the event, the run's output, its checkpoints, its
-- tool calls' and approvals' arguments (their SHA-256 stay), and its settled outbound rows
-- (answers, notes, approval notices; a row still queued or being sent is left to be sent).
-- With `p_keep_answer` (an API account without a callback, whose answer is stored for the
-- client to read: that is its delivery) the output and the reply rows stay, and the run is not
-- marked, so the retention pass removes them later.
-- Returns how many rows of each it changed. SECURITY INVOKER: under the tenant role, row-level
-- security limits it to the transaction's project. Harmless twice: a run whose text is gone
-- is skipped (`text_removed_at`), and blanking a blank row changes nothing.
CREATE FUNCTION awooop_remove_run_text(p_run_ids uuid[], p_keep_answer boolean DEFAULT false)
RETURNS TABLE (runs bigint, events bigint, steps bigint, tool_calls bigint, approvals bigint,
               outbound bigint)
LANGUAGE plpgsql AS $$
DECLARE
  v_runs uuid[];
  v_events bigint; v_steps bigint; v_calls bigint; v_approvals bigint; v_outbound bigint;
BEGIN
  WITH up AS (
    UPDATE runs r
       SET text_removed_at = CASE WHEN p_keep_answer THEN NULL ELSE now() END,
           output = CASE WHEN r.output IS NULL OR p_keep_answer THEN r.output
                         ELSE (r.output - 'proposals') || '{"text": ""}' END
     WHERE r.run_id = ANY (p_run_ids) AND r.state IN ('COMPLETED', 'FAILED')
       AND r.text_removed_at IS NULL
    RETURNING r.run_id
  )
  SELECT coalesce(array_agg(run_id), '{}') INTO v_runs FROM up;
  IF cardinality(v_runs) = 0 THEN
    RETURN QUERY SELECT 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint;
    RETURN;
  END IF;

  UPDATE conversation_events e SET body = awooop_blank_event(e.body)
    FROM runs r
   WHERE r.run_id = ANY (v_runs) AND e.event_id = r.event_id
     AND e.body IS DISTINCT FROM awooop_blank_event(e.body);
  GET DIAGNOSTICS v_events = ROW_COUNT;
  UPDATE run_steps s SET body = awooop_blank_step(s.kind, s.body)
   WHERE s.run_id = ANY (v_runs) AND s.body IS DISTINCT FROM awooop_blank_step(s.kind, s.body);
  GET DIAGNOSTICS v_steps = ROW_COUNT;
  UPDATE tool_calls t SET arguments = '{}'
   WHERE t.run_id = ANY (v_runs) AND t.arguments <> '{}';
  GET DIAGNOSTICS v_calls = ROW_COUNT;
  UPDATE approvals a SET arguments = '{}'
   WHERE a.run_id = ANY (v_runs) AND a.arguments <> '{}';
  GET DIAGNOSTICS v_approvals = ROW_COUNT;
  UPDATE outbound_messages o SET text = ''
   WHERE o.run_id = ANY (v_runs) AND o.status NOT IN ('queued', 'sending') AND o.text <> ''
     AND NOT (p_keep_answer AND o.kind = 'reply');
  GET DIAGNOSTICS v_outbound = ROW_COUNT;
  RETURN QUERY SELECT cardinality(v_runs)::bigint, v_events, v_steps, v_calls, v_approvals,
                      v_outbound;
END $$;
