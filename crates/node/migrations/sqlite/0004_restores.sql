-- When the database was last restored from a backup (`leasehold node migrate --restored`):
-- a server bound before then may present a sync token issued after the backup, once.
CREATE TABLE restores (
    restored_at  TEXT NOT NULL
);
