-- The API's rate-limit counters where no Redis is at hand (a JetStream deployment,
-- docs/decisions/0026): one row per limit, caller and minute. Unlogged: a counter is worth
-- no WAL, and one lost in a crash or a failover only lets a caller in early.
CREATE UNLOGGED TABLE rate_limits (
    bucket text NOT NULL,
    window_no bigint NOT NULL,
    hits integer NOT NULL,
    PRIMARY KEY (bucket, window_no)
);
