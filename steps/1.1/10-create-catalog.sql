-- 1.1 — a catalog for listings and search: one row per object with the
-- values the portal sorts and filters on. Filled by 20-reindex.sql.
CREATE TABLE catalog(
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL,
  portal_type TEXT NOT NULL,
  sortable_title TEXT NOT NULL,
  review_state TEXT NOT NULL,
  modified INTEGER NOT NULL,
  language TEXT NOT NULL,
  word_count INTEGER NOT NULL
);
CREATE INDEX catalog_type_title ON catalog(portal_type, sortable_title);
CREATE INDEX catalog_state_modified ON catalog(review_state, modified);
