-- Usage at scale: hourly rows in one partition a day (the node creates the partitions ahead,
-- see domain/retention.rs), rows outside every partition in a default partition, and the
-- daily roll-up that hourly rows fold into after a configurable age.
ALTER TABLE usage RENAME TO usage_unpartitioned;
ALTER INDEX usage_pkey RENAME TO usage_unpartitioned_pkey;
ALTER INDEX usage_by_server_hour RENAME TO usage_unpartitioned_by_server_hour;

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
    -- A bucket's hour never changes, so (server, instance, seq) stays unique with it.
    PRIMARY KEY (server_guid, instance_id, seq, hour)
) PARTITION BY RANGE (hour);
CREATE INDEX usage_by_server_hour ON usage(server_guid, hour);
CREATE TABLE usage_default PARTITION OF usage DEFAULT;

INSERT INTO usage SELECT server_guid, instance_id, seq, feature, hour, peak_in_use, grants,
    denials, denials_while_free, backup_use_secs, received_at FROM usage_unpartitioned;
DROP TABLE usage_unpartitioned;

-- Per server, feature and UTC day: the peak of the hourly peaks (summed over the server's
-- instances in each hour), their sum (license-hours), and the sums of the counts.
CREATE TABLE usage_daily (
    server_guid         TEXT NOT NULL REFERENCES servers(guid),
    feature             TEXT NOT NULL,
    day                 DATE NOT NULL,
    peak_in_use         BIGINT NOT NULL,
    license_hours       BIGINT NOT NULL,
    grants              BIGINT NOT NULL,
    denials             BIGINT NOT NULL,
    denials_while_free  BIGINT NOT NULL,
    backup_use_secs     BIGINT NOT NULL,
    PRIMARY KEY (server_guid, day, feature)
);
