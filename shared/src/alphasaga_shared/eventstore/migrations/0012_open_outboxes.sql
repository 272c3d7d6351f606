-- The outbox streams whose saga (or request) may not have ended: what the relay publishes
-- again when Redis forgot (docs/decisions/0014, 0028), found without reading the history.
-- A stream enters with its first row, by the trigger below, in the commit that writes it,
-- whoever writes it, so that no unfinished saga can be missing. It leaves once its
-- terminal row is published: the relay deletes it then (the terminal types are the
-- contracts', which SQL does not know), and the re-publish drops any it finds ended.
-- An entry that stays too long costs a probe at the next re-publish, nothing more.
CREATE TABLE open_outboxes (
    stream_id text PRIMARY KEY
);
ALTER TABLE open_outboxes SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0
);

CREATE FUNCTION open_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO open_outboxes (stream_id) VALUES (NEW.stream_id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
-- Row-level, but the WHEN is checked without calling the function: it runs once per
-- outbox stream (its version 1), not once per row.
CREATE TRIGGER events_open_outbox AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.version = 1 AND NEW.stream_id LIKE 'outbox:%')
    EXECUTE FUNCTION open_outbox();

-- The outbox streams there are now. Those already ended are dropped by the first
-- re-publish (it checks each entry for a terminal row); until then they cost it a probe each.
INSERT INTO open_outboxes (stream_id)
SELECT stream_id FROM events WHERE version = 1 AND stream_id LIKE 'outbox:%';
