-- rehearse:batch table=content key=id size=2000
--
-- 1.1 — reindex every object into the catalog, 2,000 objects per
-- transaction. The harness walks the id range, stores its cursor in the
-- same transaction as each batch, shows progress and ETA, and resumes
-- after the last committed batch if it is killed.
INSERT OR REPLACE INTO catalog(id, path, portal_type, sortable_title, review_state,
                               modified, language, word_count)
SELECT id, path, portal_type, lower(trim(title)), state, modified, language,
       length(body) - length(replace(body, ' ', '')) + 1
FROM content
WHERE id BETWEEN :lo AND :hi;
