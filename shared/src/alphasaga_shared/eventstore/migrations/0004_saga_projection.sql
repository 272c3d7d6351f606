-- One row per saga: what `alphasaga status` and `alphasaga list` read. A projection of
-- the event log, kept by the orchestrator's projector (alphasaga_orchestrator.projection)
-- in commit order; its position is `projection:saga_summaries` in subscription_positions.
-- It holds nothing of its own: `alphasaga projections rebuild` empties it and folds the
-- log again, so DELETE is allowed here (unlike the events table).
CREATE TABLE saga_summaries (
    saga_id          uuid        PRIMARY KEY,
    state            text        NOT NULL,
    workflow         text        NOT NULL,
    workflow_version integer     NOT NULL,
    current_step     text,
    attempt          integer     NOT NULL DEFAULT 0,
    steps_completed  text[]      NOT NULL DEFAULT '{}',
    failure          text,
    verdict          jsonb,
    metrics          jsonb,
    -- The number of the saga's events folded into this row; an upsert never lowers it.
    version          integer     NOT NULL,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- The whole folded state (alphasaga_orchestrator.saga.state_of), as replay prints it.
    saga_state       jsonb       NOT NULL
);
CREATE INDEX saga_summaries_started ON saga_summaries (started_at DESC, saga_id);
CREATE INDEX saga_summaries_state ON saga_summaries (state, started_at DESC);
