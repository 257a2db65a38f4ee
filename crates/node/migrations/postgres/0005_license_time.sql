-- License time (issue 13): each hour's license-seconds as the server reported them (0 from
-- servers older than the field), and their sum per rolled-up day. (`usage_daily.license_hours`
-- is the sum of the hourly peaks, reported as `peak_hours`.) Added to the partitioned parent,
-- so every partition has it.
ALTER TABLE usage ADD COLUMN license_secs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN license_secs BIGINT NOT NULL DEFAULT 0;
