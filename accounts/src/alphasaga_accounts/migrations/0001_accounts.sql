-- Accounts of the HTTP API and the MCP server: users, their login sessions with rotated
-- refresh tokens, API keys for machines, and who submitted which saga. Owned by
-- alphasaga_client.accounts.store; numbered in accounts_migrations.
CREATE TABLE users (
    user_id         uuid        PRIMARY KEY,
    username        text        NOT NULL UNIQUE,
    password_hash   text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('viewer', 'researcher', 'admin')),
    status          text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'locked')),
    -- Failed logins of the lockout window, newest last; cleared by a login or a lock.
    recent_failures timestamptz[] NOT NULL DEFAULT '{}',
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL
);

CREATE TABLE sessions (
    session_id     uuid        PRIMARY KEY,
    user_id        uuid        NOT NULL REFERENCES users (user_id),
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);

-- Only a hash of each refresh token is stored. A token is used once: the next one of its
-- session replaces it, and presenting a used one again revokes the session.
CREATE TABLE refresh_tokens (
    token_hash  text        PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (session_id),
    issued_at   timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- A key is shown once; its prefix finds the row, the hash of the whole key checks it.
CREATE TABLE api_keys (
    key_id      uuid        PRIMARY KEY,
    prefix      text        NOT NULL UNIQUE,
    key_hash    text        NOT NULL,
    name        text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('viewer', 'researcher', 'admin')),
    user_id     uuid        REFERENCES users (user_id),
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

-- Who submitted a saga through the API: a researcher may cancel only its own.
CREATE TABLE saga_owners (
    saga_id     uuid        PRIMARY KEY,
    subject     text        NOT NULL,
    created_at  timestamptz NOT NULL
);
