-- Named queries of fitrelay sync's checkpoints (relay/storage/checkpoints.py).

-- name: load
-- The checkpoint of $1 upstream, $2 canonical filter JSON, $3 direction, if any.
SELECT phase, until_at, boundary_ids, sent_through, pages, counts::text AS counts,
       extract(epoch FROM started_at)::float8 AS started_at
FROM sync_checkpoints
WHERE upstream = $1 AND filter = $2 AND direction = $3;

-- name: save
-- Record how far the sync got: $4 phase, $5 the until reached (inclusive), $6 the ids
-- stored at that second, $7 the last id published, $8 pages stored, $9 the counts so far.
INSERT INTO sync_checkpoints AS c
    (upstream, filter, direction, phase, until_at, boundary_ids, sent_through, pages, counts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
ON CONFLICT (upstream, filter, direction) DO UPDATE SET
    phase = $4,
    until_at = $5,
    boundary_ids = $6,
    sent_through = $7,
    pages = $8,
    counts = $9::jsonb,
    updated_at = now();

-- name: clear
DELETE FROM sync_checkpoints WHERE upstream = $1 AND filter = $2 AND direction = $3;
