-- License time (issue 13): per feature and hour, the number in use integrated over time, so
-- use can be billed by license-hours. Milliseconds in the open hour, seconds once closed.
ALTER TABLE open_usage ADD COLUMN license_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_buckets ADD COLUMN license_secs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_history ADD COLUMN license_secs INTEGER NOT NULL DEFAULT 0;
