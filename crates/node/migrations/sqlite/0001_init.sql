-- Leasehold license node schema (SQLite). Timestamps are RFC 3339 text in UTC; dates are
-- YYYY-MM-DD text. The PostgreSQL backend keeps its own migrations with the same shape.
CREATE TABLE installations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE servers (
    guid                TEXT PRIMARY KEY,
    installation_id     TEXT NOT NULL REFERENCES installations(id),
    context             TEXT NOT NULL CHECK (context IN ('production', 'backup', 'development')),
    grace_days          INTEGER NOT NULL DEFAULT 60 CHECK (grace_days >= 60),
    sync_interval_secs  INTEGER NOT NULL DEFAULT 86400 CHECK (sync_interval_secs > 0),
    instance_id         TEXT,
    bundle_serial       INTEGER NOT NULL DEFAULT 0,
    acked_usage_seq     INTEGER NOT NULL DEFAULT 0,
    head_generation     INTEGER NOT NULL DEFAULT 0,
    last_sync           TEXT,
    software_version    TEXT,
    forks_detected      INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL
);
CREATE INDEX servers_by_installation ON servers(installation_id);

CREATE TABLE licenses (
    id                  TEXT PRIMARY KEY,
    server_guid         TEXT NOT NULL REFERENCES servers(guid),
    feature             TEXT NOT NULL,
    count               INTEGER NOT NULL CHECK (count >= 1),
    context             TEXT NOT NULL CHECK (context IN ('production', 'backup', 'development')),
    maintenance_until   TEXT NOT NULL,
    expires             TEXT,
    backs_up            TEXT REFERENCES licenses(id),
    revoked_at          TEXT,
    created_at          TEXT NOT NULL
);
CREATE INDEX licenses_by_server ON licenses(server_guid);
CREATE INDEX licenses_by_backs_up ON licenses(backs_up);

-- The sync-token chain of each server. A token is revoked when a sync branches off an older
-- one; presenting a revoked token means a second copy of the server exists.
CREATE TABLE sync_tokens (
    token        TEXT PRIMARY KEY,
    server_guid  TEXT NOT NULL REFERENCES servers(guid),
    generation   INTEGER NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0,
    issued_at    TEXT NOT NULL
);
CREATE INDEX sync_tokens_by_server ON sync_tokens(server_guid, generation);

CREATE TABLE usage (
    server_guid      TEXT NOT NULL REFERENCES servers(guid),
    instance_id      TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    feature          TEXT NOT NULL,
    hour             TEXT NOT NULL,
    peak_in_use      INTEGER NOT NULL,
    grants           INTEGER NOT NULL,
    denials          INTEGER NOT NULL,
    backup_use_secs  INTEGER NOT NULL,
    received_at      TEXT NOT NULL,
    PRIMARY KEY (server_guid, instance_id, seq)
);
