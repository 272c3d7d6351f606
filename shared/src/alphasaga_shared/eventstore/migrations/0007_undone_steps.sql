-- Steps whose compensation ran. An attempt of the step still running elsewhere (another
-- replica of the worker, when a cancel compensated the step in flight) must not store
-- artifacts afterwards: ArtifactStore.put refuses once the step is listed here.
CREATE TABLE undone_steps (
    saga_id   uuid        NOT NULL,
    step      text        NOT NULL,
    undone_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, step)
);
