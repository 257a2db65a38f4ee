-- Syncs refused because the server reported another context than the vendor registered
-- (a count and when the last one happened; for `leasehold vendor events`).
ALTER TABLE servers ADD COLUMN context_rejections BIGINT NOT NULL DEFAULT 0;
ALTER TABLE servers ADD COLUMN last_context_rejection TIMESTAMPTZ;
ALTER TABLE servers ADD COLUMN last_fork TIMESTAMPTZ;
