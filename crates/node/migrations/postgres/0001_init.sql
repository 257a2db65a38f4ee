-- Leasehold license node schema (PostgreSQL): the same tables as the SQLite schema, in
-- native types (timestamptz, date, bigint, boolean). Many nodes share one database; the
-- domain layer takes row locks (SELECT ... FOR UPDATE) on the row each decision rests on.
CREATE TABLE installations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE servers (
    guid                TEXT PRIMARY KEY,
    installation_id     TEXT NOT NULL REFERENCES installations(id),
    context             TEXT NOT NULL CHECK (context IN ('production', 'backup', 'development')),
    grace_days          BIGINT NOT NULL DEFAULT 60 CHECK (grace_days >= 60),
    sync_interval_secs  BIGINT NOT NULL DEFAULT 86400 CHECK (sync_interval_secs > 0),
    instance_id         TEXT,
    bundle_serial       BIGINT NOT NULL DEFAULT 0,
    acked_usage_seq     BIGINT NOT NULL DEFAULT 0,
    head_generation     BIGINT NOT NULL DEFAULT 0,
    last_sync           TIMESTAMPTZ,
    software_version    TEXT,
    forks_detected      BIGINT NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX servers_by_installation ON servers(installation_id);

CREATE TABLE licenses (
    id                  TEXT PRIMARY KEY,
    server_guid         TEXT NOT NULL REFERENCES servers(guid),
    feature             TEXT NOT NULL,
    count               BIGINT NOT NULL CHECK (count >= 1),
    context             TEXT NOT NULL CHECK (context IN ('production', 'backup', 'development')),
    maintenance_until   DATE NOT NULL,
    expires             DATE,
    backs_up            TEXT REFERENCES licenses(id),
    revoked_at          TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX licenses_by_server ON licenses(server_guid);
CREATE INDEX licenses_by_backs_up ON licenses(backs_up);

CREATE TABLE sync_tokens (
    token        TEXT PRIMARY KEY,
    server_guid  TEXT NOT NULL REFERENCES servers(guid),
    generation   BIGINT NOT NULL,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE,
    issued_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX sync_tokens_by_server ON sync_tokens(server_guid, generation);

CREATE TABLE usage (
    server_guid         TEXT NOT NULL REFERENCES servers(guid),
    instance_id         TEXT NOT NULL,
    seq                 BIGINT NOT NULL,
    feature             TEXT NOT NULL,
    hour                TIMESTAMPTZ NOT NULL,
    peak_in_use         BIGINT NOT NULL,
    grants              BIGINT NOT NULL,
    denials             BIGINT NOT NULL,
    denials_while_free  BIGINT NOT NULL DEFAULT 0,
    backup_use_secs     BIGINT NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (server_guid, instance_id, seq)
);
CREATE INDEX usage_by_server_hour ON usage(server_guid, hour);
