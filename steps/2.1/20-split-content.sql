-- 2.1 — split `content` in two (backward incompatible: code that reads
-- content.title or content.body must use content_text from now on).
--
--   content       id, path, portal_type, language, state, created, modified, blob
--   content_text  id, title, body
--
-- SQLite cannot drop columns that cheaply, so this is the documented
-- rebuild: new table, copy, drop, rename, recreate the indexes, in one
-- transaction (the harness runs a plain .sql step in one).
CREATE TABLE content_text(
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  body TEXT NOT NULL
);
INSERT INTO content_text(id, title, body) SELECT id, title, body FROM content;

CREATE TABLE content_new(
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  portal_type TEXT NOT NULL,
  language TEXT NOT NULL DEFAULT 'en',
  state TEXT NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL,
  blob TEXT
);
INSERT INTO content_new(id, path, portal_type, language, state, created, modified, blob)
  SELECT id, path, portal_type, language, state, created, modified, blob FROM content;
DROP TABLE content;
ALTER TABLE content_new RENAME TO content;
CREATE INDEX content_state_modified ON content(state, modified);
UPDATE site SET value = '3' WHERE key = 'schema';
