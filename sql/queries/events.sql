-- Named queries of the event store. Format: a line "-- name: <name>", then description
-- comment lines, then the statement. Parameters are asyncpg's $n.

-- name: ingest
-- Store one batch; see fitrelay_ingest in the migrations for the status codes.
SELECT fitrelay_ingest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15);

-- name: ingest_documents
-- Store one batch holding events of searchable kinds, and their search documents.
SELECT fitrelay_ingest_documents($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                                 $15, $16, $17, $18, $19);

-- name: search_ready
-- Whether NIP-50 search can run here: pg_trgm installed and the word index built.
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm')
   AND to_regclass('search_words_trgm_idx') IS NOT NULL;

-- name: head_seq
-- The newest position of the append log (0 when empty).
SELECT coalesce(max(seq), 0) FROM events;

-- name: tail
-- Events appended after a position, in log order.
SELECT seq, raw FROM events WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: tail_ids
-- The same, only the ids: the reader may hold the events (see raws_at).
SELECT seq, id FROM events WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: raws_at
-- The JSON of the events at the given log positions.
SELECT seq, raw FROM events WHERE seq = ANY($1::bigint[]);

-- name: tail_keys
-- The same, without the events: what the tail needs when nobody is subscribed.
SELECT seq, id, kind, pubkey FROM events WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: raws
-- The stored JSON of the given events (those still stored), for the ids ($1) and created_at
-- ($2) a query found and the event cache does not hold. With created_at a partitioned
-- events table is probed in the one partition that can hold each event.
SELECT e.id, e.raw FROM unnest($1::bytea[], $2::bigint[]) AS k (id, created_at)
JOIN events e ON e.id = k.id AND e.created_at = k.created_at;

-- name: removals_head
-- The newest position of the removal log (0 when empty).
SELECT coalesce(max(seq), 0) FROM removed_events;

-- name: removals
-- Removals logged after a position, in log order (the indexer prunes what it has applied).
SELECT seq, kind, pubkey, id FROM removed_events WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: newest
-- The JSON of the newest events, for the relay's in-memory mirror to start from.
SELECT raw FROM events ORDER BY created_at DESC, id LIMIT $1;

-- name: lock_log
-- Taken by every transaction that changes events, so seq values become visible in order
-- (a table lock only the relay's role may take, migration 0008).
LOCK TABLE fitrelay_log_lock IN EXCLUSIVE MODE;

-- name: purge_expired
-- Delete events whose NIP-40 expiration has passed, with their tags; returns how many.
-- Run after lock_log in the same transaction.
WITH gone AS (
    DELETE FROM events WHERE expires_at <= $1 RETURNING id
), gone_tags AS (
    DELETE FROM event_tags WHERE event_id IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone;

-- name: export_page
-- One page of an export, in log order after a position. A NULL parameter places no
-- condition (the export connection sets plan_cache_mode = force_custom_plan, so the NULL
-- tests fold away when the plan is made). $8/$9 are the (created_at, id) cut-off of a
-- filter's limit: rows at or after it in the REQ order (newest first, ties by lowest id)
-- are kept.
SELECT e.seq, e.raw FROM events e
WHERE e.seq > $1::bigint
  AND (e.expires_at IS NULL OR e.expires_at > $2::bigint)
  AND ($3::integer[] IS NULL OR e.kind = ANY($3::integer[]))
  AND ($4::bytea[] IS NULL OR e.pubkey = ANY($4::bytea[]))
  AND ($5::bytea[] IS NULL OR e.id = ANY($5::bytea[]))
  AND ($6::bigint IS NULL OR e.created_at >= $6::bigint)
  AND ($7::bigint IS NULL OR e.created_at <= $7::bigint)
  AND ($8::bigint IS NULL OR e.created_at > $8::bigint
       OR (e.created_at = $8::bigint AND e.id <= $9::bytea))
ORDER BY e.seq
LIMIT $10;

-- name: plan_per_run
-- For the rest of this transaction, plan each statement for its values (shapes whose best
-- plan depends on them: ANY over many values, COUNT).
SET LOCAL plan_cache_mode = force_custom_plan

-- name: plan_search
-- For the rest of this transaction: a NIP-50 search, planned for its values, may read its
-- GIN indexes (which only bitmap scans can).
SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_bitmapscan = on
