-- Leasehold license server state (SQLite, in the data directory).
-- `meta` holds single values: GUID, instance id, the last bundle envelope verbatim, the sync
-- token, the time high-water mark, the next usage sequence number.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Closed hours waiting for a node to acknowledge them; deleted only after it has.
CREATE TABLE usage_buckets (
    seq              INTEGER PRIMARY KEY,
    feature          TEXT NOT NULL,
    hour             TEXT NOT NULL,
    peak_in_use      INTEGER NOT NULL,
    grants           INTEGER NOT NULL,
    denials          INTEGER NOT NULL,
    backup_use_secs  INTEGER NOT NULL
);

-- The hour in progress, flushed every second so a crash loses at most that second.
CREATE TABLE open_usage (
    feature        TEXT NOT NULL,
    hour           TEXT NOT NULL,
    peak_in_use    INTEGER NOT NULL,
    grants         INTEGER NOT NULL,
    denials        INTEGER NOT NULL,
    backup_use_ms  INTEGER NOT NULL,
    PRIMARY KEY (feature, hour)
);
