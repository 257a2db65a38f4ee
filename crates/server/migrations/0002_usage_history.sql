-- The server's own usage history for the dashboard charts, one row per feature per closed
-- hour. Unlike `usage_buckets` it is not deleted when a node acknowledges the hour; it is
-- pruned by age (35 days). `hour` is the start of the hour in Unix seconds (UTC);
-- `licensed` is the licensed count of the feature when the hour closed.
CREATE TABLE usage_history (
    feature          TEXT NOT NULL,
    hour             INTEGER NOT NULL,
    peak_in_use      INTEGER NOT NULL,
    grants           INTEGER NOT NULL,
    denials          INTEGER NOT NULL,
    licensed         INTEGER NOT NULL,
    backup_use_secs  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (feature, hour)
);

CREATE INDEX usage_history_by_hour ON usage_history (hour);
