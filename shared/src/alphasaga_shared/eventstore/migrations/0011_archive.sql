-- Retention (docs/decisions/0018): a finished saga's events leave the hot `events` table for
-- `archived_events` whole and verified, never edited. Both streams of a saga move together
-- (`saga-<id>` and `outbox:<id>`), with a manifest: their counts and one SHA-256 over their
-- rows, computed from the hot rows before the move and checked against the archived ones.

-- The same columns, in the same order, as `events`: a row is copied as it is.
CREATE TABLE archived_events (
    global_position bigint      NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    version         integer     NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    type            text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    transaction_id  xid8        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (stream_id, version)
);

CREATE TABLE archive_manifests (
    saga_id     uuid        PRIMARY KEY,
    events      integer     NOT NULL CHECK (events > 0),
    outbox      integer     NOT NULL CHECK (outbox >= 0),
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    finished_at timestamptz NOT NULL,  -- the saga's last event
    archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX archive_manifests_archived ON archive_manifests (archived_at, saga_id);

CREATE FUNCTION refuse_archive_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % table is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER archived_events_append_only BEFORE UPDATE OR DELETE ON archived_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_archive_change();
CREATE TRIGGER archived_events_no_truncate BEFORE TRUNCATE ON archived_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_archive_change();
CREATE TRIGGER archive_manifests_append_only BEFORE UPDATE OR DELETE ON archive_manifests
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_archive_change();
CREATE TRIGGER archive_manifests_no_truncate BEFORE TRUNCATE ON archive_manifests
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_archive_change();

-- `events` still refuses UPDATE and TRUNCATE before anything happens. A DELETE is checked
-- after it, over the rows it removed: it stands only when every one has an identical copy
-- in `archived_events`, no row of their streams is left behind, and each stream belongs to
-- a saga with a manifest. Anything else (a plain DELETE, even of no row) is refused and
-- rolled back. The archive module (eventstore/archive.py) is the one path that passes.
DROP TRIGGER IF EXISTS events_append_only ON events;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

CREATE FUNCTION refuse_unarchived_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM gone) THEN
        RAISE EXCEPTION 'the events table is append-only: DELETE refused'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM gone g WHERE NOT EXISTS (
            SELECT 1 FROM archived_events a
            WHERE a.stream_id = g.stream_id AND a.version = g.version
              AND a.global_position = g.global_position AND a.event_id = g.event_id AND a.type = g.type
              AND a.data = g.data AND a.metadata = g.metadata AND a.transaction_id = g.transaction_id
              AND a.recorded_at = g.recorded_at)
    ) THEN
        RAISE EXCEPTION 'the events table is append-only: DELETE refused (a row has no identical copy in archived_events)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM events e WHERE e.stream_id IN (SELECT stream_id FROM gone)) THEN
        RAISE EXCEPTION 'the events table is append-only: DELETE refused (streams move to the archive whole)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM (SELECT DISTINCT stream_id FROM gone) s WHERE NOT EXISTS (
            SELECT 1 FROM archive_manifests m
            WHERE s.stream_id IN ('saga-' || m.saga_id::text, 'outbox:' || m.saga_id::text))
    ) THEN
        RAISE EXCEPTION 'the events table is append-only: DELETE refused (a stream of no archived saga)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_leave_only_for_the_archive AFTER DELETE ON events
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_unarchived_delete();

-- The read model keeps an archived saga's row, marked, so that status and list still show
-- it and the archiver finds what is left to move without reading the log.
ALTER TABLE saga_summaries ADD COLUMN archived_at timestamptz;
CREATE INDEX saga_summaries_to_archive ON saga_summaries (updated_at) WHERE archived_at IS NULL;
