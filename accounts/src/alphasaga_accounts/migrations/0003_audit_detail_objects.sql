-- Until issue #23 each record's detail was stored as a JSON string inside jsonb (encoded
-- twice). Each becomes the object it spells. The content is the same, and every hash is
-- taken over the decoded detail, so the chain still verifies. The append-only trigger is
-- set aside for this statement alone, inside the migration's transaction.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
UPDATE audit_log SET detail = (detail #>> '{}')::jsonb WHERE jsonb_typeof(detail) = 'string';
ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;
