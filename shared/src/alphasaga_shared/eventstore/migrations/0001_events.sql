-- The append-only event log. Every saga event and every outgoing command lives here
-- (the log is the outbox). Append-only is enforced by triggers, not promised.
CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    type            text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    -- Commit order is not global_position order: readers that tail the log order by
    -- (transaction_id, global_position) below the oldest running transaction.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (stream_id, version)
);

CREATE INDEX events_commit_order ON events (transaction_id, global_position);
CREATE INDEX events_outbox_commit_order ON events (transaction_id, global_position)
    WHERE stream_id LIKE 'outbox:%';

CREATE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the events table is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

-- Statement-level, so that even a DELETE matching no row is refused.
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- Where each log reader (relay, projections) has got to.
CREATE TABLE subscription_positions (
    name            text        PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Message ids already handled by a consumer, written in the same transaction as the
-- events the message caused: a redelivery is recognised and acked, not re-applied.
CREATE TABLE inbox (
    consumer    text        NOT NULL,
    message_id  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
