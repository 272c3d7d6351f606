-- Durable deadlines. One row per saga with a pending deadline (a step's timeout, a
-- retry's backoff, a compensation's timeout), written in the same transaction as the
-- events that set it. It is an index of the saga's state for the timer, not state of
-- its own: every row can be rebuilt by folding the saga's events.
CREATE TABLE saga_timers (
    saga_id  uuid        PRIMARY KEY,
    due_at   timestamptz NOT NULL,
    kind     text        NOT NULL,
    step     text        NOT NULL,
    attempt  integer     NOT NULL,
    version  integer     NOT NULL
);
CREATE INDEX saga_timers_due ON saga_timers (due_at);

-- Snapshots bound the cost of rebuilding a long saga: the newest one per stream.
CREATE TABLE snapshots (
    stream_id   text        PRIMARY KEY,
    version     integer     NOT NULL,
    type        text        NOT NULL,
    state       jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
