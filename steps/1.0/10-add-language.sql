-- 1.0 — multilingual content.
-- Every object gets a language (the site was English only), and the
-- "recent items by workflow state" listing gets the index it has been
-- missing. ALTER TABLE ... ADD COLUMN with a constant default does not
-- rewrite the table; CREATE INDEX reads every row once.
ALTER TABLE content ADD COLUMN language TEXT NOT NULL DEFAULT 'en';
CREATE INDEX content_state_modified ON content(state, modified);
UPDATE site SET value = '2' WHERE key = 'schema';
