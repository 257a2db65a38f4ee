-- Daily roll-up of hourly usage after a configurable age (see domain/retention.rs).
CREATE INDEX IF NOT EXISTS usage_by_server_hour ON usage(server_guid, hour);
CREATE TABLE usage_daily (
    server_guid         TEXT NOT NULL REFERENCES servers(guid),
    feature             TEXT NOT NULL,
    day                 TEXT NOT NULL,
    peak_in_use         INTEGER NOT NULL,
    license_hours       INTEGER NOT NULL,
    grants              INTEGER NOT NULL,
    denials             INTEGER NOT NULL,
    denials_while_free  INTEGER NOT NULL,
    backup_use_secs     INTEGER NOT NULL,
    PRIMARY KEY (server_guid, day, feature)
);
