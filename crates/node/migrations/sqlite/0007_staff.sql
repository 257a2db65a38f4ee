-- Vendor staff: named accounts with a role (Argon2 password hashes), their personal API
-- tokens (only the SHA-256 of each is kept), console sessions (likewise), and the audit log
-- of every change made through the API, the CLI or the console. The audit log is
-- append-only: the triggers refuse any UPDATE or DELETE of its rows.
CREATE TABLE vendor_accounts (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('support', 'admin')),
    password_hash  TEXT NOT NULL,
    disabled_at    TEXT,
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    last_sign_in   TEXT
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    account_id    TEXT NOT NULL REFERENCES vendor_accounts(id),
    label         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX api_tokens_by_account ON api_tokens(account_id);

CREATE TABLE console_sessions (
    token_hash    TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES vendor_accounts(id),
    csrf          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    flash         TEXT
);
CREATE INDEX console_sessions_by_account ON console_sessions(account_id);

CREATE TABLE audit_log (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    at                     TEXT NOT NULL,
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

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be changed');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be deleted');
END;

-- When the vendor last reassigned the GUID: a fork refused before then is resolved.
ALTER TABLE servers ADD COLUMN reassigned_at TEXT;
