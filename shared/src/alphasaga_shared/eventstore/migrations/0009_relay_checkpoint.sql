-- The relay's checkpoint holds more than a position:
-- * published_ahead: the outbox rows it published directly past the position (its own
--   commits, published before the tail could reach them behind another process's running
--   commit), which the relay taking over passes over;
-- * epoch: bumped by each relay that takes the lock, so that a relay which lost it can no
--   longer overwrite the checkpoint its successor has read.
ALTER TABLE subscription_positions
    ADD COLUMN published_ahead uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
