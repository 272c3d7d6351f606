-- Tables rewritten on every decision or pass are vacuumed after a fixed number of dead
-- rows, not a share of the table (issue #32, docs/decisions/0017): a saga's timer row is
-- replaced at each decision and deleted at its end, a summary is replaced at each
-- projector batch, the positions every 100 ms. With the default 20% their dead rows pile up
-- between vacuums, and each read of a due timer, a summary or a position walks them.
-- No cost delay on the small ones: a vacuum there takes milliseconds.
ALTER TABLE saga_timers SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE subscription_positions SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200, autovacuum_vacuum_cost_delay = 0
);
-- Room on each page for the next version of a row, so that a summary rewritten without a
-- change to an indexed column (most batches) is a HOT update, with no new index entries.
ALTER TABLE saga_summaries SET (
    fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);
-- Append-only tables are vacuumed for their visibility map (index-only scans) and analysed
-- after a fixed share of new rows, which for a table of years is not a fifth of it.
ALTER TABLE events SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
ALTER TABLE inbox SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);

-- The saga list's indexes end in its order, (started_at, saga_id) both descending, so that
-- a keyset page (``(started_at, saga_id) < (…)``) is an index bound, not a filter over
-- every row before it (docs/decisions/0017, with the plans).
DROP INDEX saga_summaries_started;
CREATE INDEX saga_summaries_started ON saga_summaries (started_at DESC, saga_id DESC);
DROP INDEX saga_summaries_state;
CREATE INDEX saga_summaries_state ON saga_summaries (state, started_at DESC, saga_id DESC);
DROP INDEX saga_summaries_dataset;
CREATE INDEX saga_summaries_dataset ON saga_summaries (dataset, started_at DESC, saga_id DESC);
