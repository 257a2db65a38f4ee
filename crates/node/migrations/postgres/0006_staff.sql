-- Vendor staff: named accounts with a role (Argon2 password hashes), their personal API
-- tokens (only the SHA-256 of each is kept), console sessions (likewise), and the audit log
-- of every change made through the API, the CLI or the console. The audit log is
-- append-only: the triggers refuse any UPDATE, DELETE or TRUNCATE of it.
CREATE TABLE vendor_accounts (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('support', 'admin')),
    password_hash  TEXT NOT NULL,
    disabled_at    TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,
    created_by     TEXT NOT NULL,
    last_sign_in   TIMESTAMPTZ
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    account_id    TEXT NOT NULL REFERENCES vendor_accounts(id),
    label         TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX api_tokens_by_account ON api_tokens(account_id);

CREATE TABLE console_sessions (
    token_hash    TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES vendor_accounts(id),
    csrf          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    flash         TEXT
);
CREATE INDEX console_sessions_by_account ON console_sessions(account_id);

CREATE TABLE audit_log (
    id                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                     TIMESTAMPTZ NOT NULL,
    actor                  TEXT NOT NULL,
    actor_role             TEXT,
    via                    TEXT NOT NULL,
    action                 TEXT NOT NULL,
    installation_id        TEXT,
    other_installation_id  TEXT,
    server_guid            TEXT,
    other_server_guid      TEXT,
    target                 TEXT NOT NULL,
    reason                 TEXT NOT NULL,
    before_json            TEXT,
    after_json             TEXT
);
CREATE INDEX audit_log_by_installation ON audit_log(installation_id, id);
CREATE INDEX audit_log_by_other_installation ON audit_log(other_installation_id, id);
CREATE INDEX audit_log_by_actor ON audit_log(actor, id);
CREATE INDEX audit_log_by_server ON audit_log(server_guid, id);
CREATE INDEX audit_log_by_other_server ON audit_log(other_server_guid, id);
CREATE INDEX audit_log_by_target ON audit_log(target, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: entries cannot be changed or deleted';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- When the vendor last reassigned the GUID: a fork refused before then is resolved.
ALTER TABLE servers ADD COLUMN reassigned_at TIMESTAMPTZ;
