-- Of the denials in each usage row: those reported while the server had licenses neither in
-- use nor reserved (a count only; issue 9).
ALTER TABLE usage ADD COLUMN denials_while_free INTEGER NOT NULL DEFAULT 0;
