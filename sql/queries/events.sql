-- Named queries of the event store. Format: a line "-- name: <name>", then description
-- comment lines, then the statement. Parameters are asyncpg's $n.

-- name: ingest
-- Store one batch; see fitrelay_ingest in the migrations for the status codes.
SELECT fitrelay_ingest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15);

-- name: head_seq
-- The newest position of the append log (0 when empty).
SELECT coalesce(max(seq), 0) FROM events;

-- name: tail
-- Events appended after a position, in log order.
SELECT seq, raw FROM events WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: purge_expired
-- Delete events whose NIP-40 expiration has passed, with their tags; returns how many.
WITH gone AS (
    DELETE FROM events WHERE expires_at <= $1 RETURNING id
), gone_tags AS (
    DELETE FROM event_tags WHERE event_id IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone;
