-- The saga list can be filtered by dataset: the request's built-in dataset, or the name of
-- the user's data file. Rows folded before this column existed lack it, so the read model
-- is emptied and its position forgotten: the projector folds the whole log again.
ALTER TABLE saga_summaries ADD COLUMN dataset text;
CREATE INDEX saga_summaries_dataset ON saga_summaries (dataset, started_at DESC);
DELETE FROM saga_summaries;
DELETE FROM subscription_positions WHERE name = 'projection:saga_summaries';
