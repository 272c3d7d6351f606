-- Artifacts (code, models, reports, plots) stored by content hash. Messages carry only
-- references. A saga step's artifacts are linked to it so compensation can remove them.
CREATE TABLE artifact_blobs (
    sha256     text        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    media_type text        NOT NULL,
    size       bigint      NOT NULL,
    content    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE artifacts (
    saga_id    uuid        NOT NULL,
    step       text        NOT NULL,
    name       text        NOT NULL,
    kind       text        NOT NULL,
    sha256     text        NOT NULL REFERENCES artifact_blobs (sha256),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, step, name)
);
CREATE INDEX artifacts_by_blob ON artifacts (sha256);
