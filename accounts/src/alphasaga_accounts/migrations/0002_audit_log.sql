-- The audit log: logins, failures, lockouts, keys made and revoked, every mutating call.
-- Owned by alphasaga_client.accounts.audit. Append-only like the events table, and each
-- record holds the hash of the one before, so that an edit made past the trigger (by a
-- superuser) is found by `alphasaga audit verify`.
CREATE TABLE audit_log (
    seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor      text        NOT NULL,
    action     text        NOT NULL,
    target     text        NOT NULL,
    outcome    text        NOT NULL,
    detail     jsonb       NOT NULL DEFAULT '{}',
    prev_hash  text        NOT NULL,
    hash       text        NOT NULL
);

CREATE FUNCTION refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change();
