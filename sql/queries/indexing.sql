-- Named queries that index stored events for multi-letter tag names and search kinds added
-- to the configuration (relay.storage.indexing). Format as in events.sql.

-- name: indexed_names
-- The multi-letter tag names every stored event is indexed for.
SELECT name FROM indexed_tag_names;

-- name: searched_kinds
-- The kinds every stored event of which has its search document.
SELECT kind FROM search_kinds;

-- name: page_named
-- Stored events after a position whose JSON may hold one of the names: a LIKE per name, and
-- every event with a \u escape (a name may be written escaped).
SELECT seq, raw FROM events
WHERE seq > $1 AND (raw LIKE ANY($2::text[]) OR strpos(raw, E'\\u') > 0)
ORDER BY seq LIMIT $3;

-- name: page_kinds
-- Stored events of the kinds after a position.
SELECT seq, raw FROM events WHERE seq > $1 AND kind = ANY($2::integer[]) ORDER BY seq LIMIT $3;

-- name: add_tags
-- Tag rows of stored events that lack them (run after lock_log, so no event goes meanwhile).
INSERT INTO event_tags (event_id, name, value, kind, pubkey, created_at)
SELECT e.id, t.name, t.value, e.kind, e.pubkey, e.created_at
FROM unnest($1::bytea[], $2::text[], $3::text[]) AS t (id, name, value)
JOIN events e ON e.id = t.id
WHERE NOT EXISTS (
    SELECT FROM event_tags x WHERE x.event_id = t.id AND x.name = t.name AND x.value = t.value
);

-- name: add_documents
-- Search documents of stored events that lack one (run after lock_log).
SELECT fitrelay_add_documents($1, $2, $3, $4, $5);

-- name: record_names
-- These names are now indexed for every stored event.
INSERT INTO indexed_tag_names (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING;

-- name: record_kinds
-- These kinds now have a document for every stored event.
INSERT INTO search_kinds (kind) SELECT unnest($1::integer[]) ON CONFLICT DO NOTHING;

-- name: drop_names
-- Names no longer configured: their rows go (new events no longer get them).
WITH gone AS (DELETE FROM indexed_tag_names WHERE name = ANY($1::text[]) RETURNING name)
DELETE FROM event_tags WHERE name IN (SELECT name FROM gone);

-- name: drop_kinds
-- Kinds no longer searched: their documents go.
WITH gone AS (DELETE FROM search_kinds WHERE kind = ANY($1::integer[]) RETURNING kind)
DELETE FROM search_documents WHERE kind IN (SELECT kind FROM gone);
