-- Allocation quality (issue 9): what the server granted survives a restart, usage is counted
-- exactly once, denials while licenses were free are counted, and hours recorded under one
-- server GUID are uploaded only under that GUID.

-- Reservation bounds per client and feature. Every grant that raised a reservation was
-- written here before it was answered; the periodic flush lowers them again. A restarted
-- server holds each as a reservation for one full hold.
CREATE TABLE lease_bounds (
    client_id        TEXT NOT NULL,
    feature          TEXT NOT NULL,
    bound            INTEGER NOT NULL,
    product_release  TEXT NOT NULL,
    failover         INTEGER NOT NULL,
    PRIMARY KEY (client_id, feature)
);

-- Calls each client reported to this server and that it counted (running totals), written in
-- the same transaction as the ledger, so a restart neither loses nor recounts a call. Kept a
-- day after a client's lease lapsed.
CREATE TABLE client_counts (
    client_id  TEXT NOT NULL,
    feature    TEXT NOT NULL,
    acquired   INTEGER NOT NULL,
    denied     INTEGER NOT NULL,
    PRIMARY KEY (client_id, feature)
);

ALTER TABLE usage_buckets ADD COLUMN denials_while_free INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_buckets ADD COLUMN server_guid TEXT NOT NULL DEFAULT '';
UPDATE usage_buckets SET server_guid = COALESCE((SELECT value FROM meta WHERE key = 'guid'), '');
ALTER TABLE open_usage ADD COLUMN denials_while_free INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_history ADD COLUMN denials_while_free INTEGER NOT NULL DEFAULT 0;
