-- SQLite's REPLACE (`INSERT OR REPLACE`, `REPLACE INTO`) removes the row it conflicts with
-- without firing delete triggers (recursive triggers are off), so inserting a row with an
-- existing entry's id overwrote that entry past the triggers of 0007. An insert naming an
-- id already taken is refused instead; new entries take the next id as before.
CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be replaced');
END;
