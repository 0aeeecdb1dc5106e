-- Named queries of the fetcher (relay/fetcher.py).

-- name: due
-- Missing addresses to fetch now, oldest first: never tried, or pending and past their
-- next_attempt; addresses whose event is stored here (but not indexable) are left out.
SELECT m.kind, m.pubkey, m.d, m.address, m.relay_hints, coalesce(f.attempts, 0) AS attempts
FROM fitness.missing_references m
LEFT JOIN fitness.fetch_attempts f ON f.address = m.address
WHERE (f.address IS NULL OR (f.status = 'pending' AND f.next_attempt <= now()))
  AND m.pubkey ~ '^[0-9a-f]{64}$'
  AND NOT EXISTS (
      SELECT 1 FROM events e
      WHERE e.pubkey = decode(m.pubkey, 'hex') AND e.kind = m.kind AND e.d_tag = m.d)
ORDER BY f.next_attempt NULLS FIRST, m.address
LIMIT $1;

-- name: relay_lists
-- The stored NIP-65 relay lists (kind 10002) of some authors (hex pubkeys).
SELECT encode(pubkey, 'hex') AS pubkey, raw
FROM events
WHERE kind = 10002 AND d_tag = '' AND pubkey = ANY($1::bytea[]);

-- name: record
-- One attempt's outcome: $1 address, $2 kind, $3 pubkey, $4 d, $5 status, $6 reason,
-- $7 last upstream, $8 seconds until the next attempt.
INSERT INTO fitness.fetch_attempts AS f
    (address, kind, pubkey, d, attempts, last_attempt, next_attempt, status, reason,
     last_upstream)
VALUES ($1, $2, $3, $4, 1, now(), now() + make_interval(secs => $8), $5, $6, $7)
ON CONFLICT (address) DO UPDATE SET
    attempts = f.attempts + 1,
    last_attempt = now(),
    next_attempt = now() + make_interval(secs => $8),
    status = $5,
    reason = $6,
    last_upstream = coalesce($7, f.last_upstream)
RETURNING attempts;

-- name: backlog
-- The queue's depth (missing addresses not given up) and the age in seconds of the oldest
-- missing dependency still pending (from when the fetcher first saw it).
SELECT count(*) FILTER (WHERE f.status IS DISTINCT FROM 'given_up') AS depth,
       coalesce(extract(epoch FROM now() - min(f.first_seen)
                FILTER (WHERE f.status = 'pending')), 0)::float8 AS oldest_seconds
FROM fitness.missing_references m
LEFT JOIN fitness.fetch_attempts f ON f.address = m.address;

-- name: take_lease
-- $1 holder, $2 seconds: true when this holder has the lease (taken or renewed).
UPDATE fitness.fetcher_lease
SET holder = $1, expires = now() + make_interval(secs => $2)
WHERE holder = $1 OR expires < now()
RETURNING true

-- name: give_lease
UPDATE fitness.fetcher_lease SET expires = '-infinity' WHERE holder = $1

-- name: refresh_due
-- What freshness re-checks now, the longest overdue first: $1 author kinds, $2/$3 thresholds
-- per kind (fitness.refresh_candidates), $4 the most to take.
SELECT kind, pubkey, d, address
FROM fitness.refresh_candidates($1::int[], $2::int[], $3::float8[])
WHERE due <= now()
ORDER BY due, address
LIMIT $4;

-- name: refresh_state
-- How much freshness tracks, and how much of it is stale (due for a re-check) now.
SELECT count(*) AS tracked, count(*) FILTER (WHERE due <= now()) AS stale
FROM fitness.refresh_candidates($1::int[], $2::int[], $3::float8[]);

-- name: refresh_record
-- One re-check's outcome: $1 address, $2 kind, $3 pubkey, $4 d, $5 outcome, $6 reason,
-- $7 the relay that answered (or failed last), $8 seconds until the next check.
INSERT INTO fitness.refresh_checks AS r
    (address, kind, pubkey, d, next_check, outcome, reason, last_upstream)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $8), $5, $6, $7)
ON CONFLICT (address) DO UPDATE SET
    checks = r.checks + 1,
    last_check = now(),
    next_check = now() + make_interval(secs => $8),
    outcome = $5,
    reason = $6,
    last_upstream = coalesce($7, r.last_upstream);
