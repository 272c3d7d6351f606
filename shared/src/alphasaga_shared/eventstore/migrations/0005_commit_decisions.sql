-- Commit the orchestrator's decisions in one round trip: the inbox records of the
-- messages decided on, the new events of any number of streams (each with the version
-- its writer expected, or NULL for "after whatever is there"), the saga timers to set or
-- clear, and snapshots; it wakes the relay (NOTIFY) when it wrote outbox rows. All or
-- nothing: a message already in the inbox or a stream that moved on raises
-- serialization_failure (40001) and nothing is written; the caller decides again on
-- fresh state.
CREATE FUNCTION commit_decisions(
    p_consumer    text,
    p_message_ids text[],
    e_stream      text[],
    e_expected    integer[],
    e_ord         integer[],
    e_id          uuid[],
    e_type        text[],
    e_data        jsonb[],
    e_meta        jsonb[],
    t_saga        uuid[],
    t_due         timestamptz[],
    t_kind        text[],
    t_step        text[],
    t_attempt     integer[],
    t_version     integer[],
    t_clear       uuid[],
    s_stream      text[],
    s_version     integer[],
    s_type        text[],
    s_state       jsonb[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    wanted integer;
    written integer;
BEGIN
    wanted := coalesce(array_length(p_message_ids, 1), 0);
    INSERT INTO inbox (consumer, message_id)
        SELECT p_consumer, m FROM unnest(p_message_ids) AS m
        ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written <> wanted THEN
        RAISE EXCEPTION 'a message of this batch was already handled' USING ERRCODE = 'serialization_failure';
    END IF;

    wanted := coalesce(array_length(e_stream, 1), 0);
    WITH input AS (
        SELECT * FROM unnest(e_stream, e_expected, e_ord, e_id, e_type, e_data, e_meta)
            AS t(stream_id, expected, ord, event_id, type, data, metadata)
    ), cur AS (
        SELECT s.stream_id, (SELECT coalesce(max(version), 0) FROM events e WHERE e.stream_id = s.stream_id) AS v
        FROM (SELECT DISTINCT stream_id FROM input) s
    )
    INSERT INTO events (stream_id, version, event_id, type, data, metadata)
        SELECT i.stream_id, coalesce(i.expected, c.v) + i.ord, i.event_id, i.type, i.data, i.metadata
        FROM input i JOIN cur c USING (stream_id)
        WHERE i.expected IS NULL OR i.expected = c.v
        ORDER BY i.stream_id, i.ord;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written <> wanted THEN
        RAISE EXCEPTION 'a stream is no longer at the expected version' USING ERRCODE = 'serialization_failure';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(e_stream) AS s WHERE s LIKE 'outbox:%') THEN
        -- Delivered at commit, collapsed within a transaction: wakes the relay at once
        -- (a hint only: the relay still polls, so a lost notification delays, never loses).
        PERFORM pg_notify('alphasaga_outbox_' || current_schema(), '');
    END IF;

    INSERT INTO saga_timers (saga_id, due_at, kind, step, attempt, version)
        SELECT * FROM unnest(t_saga, t_due, t_kind, t_step, t_attempt, t_version)
        ON CONFLICT (saga_id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind,
            step = excluded.step, attempt = excluded.attempt, version = excluded.version;
    DELETE FROM saga_timers WHERE saga_id = ANY (t_clear);

    INSERT INTO snapshots (stream_id, version, type, state)
        SELECT * FROM unnest(s_stream, s_version, s_type, s_state)
        ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, type = excluded.type,
            state = excluded.state, recorded_at = now()
        WHERE snapshots.version < excluded.version;
END
$$;
