-- Queries of the migration runner (relay/storage/migrate.py).

-- name: lock
-- One migrating process at a time (the others wait, then find nothing left to do).
SELECT pg_advisory_lock($1)

-- name: unlock
SELECT pg_advisory_unlock($1)

-- name: create_ledger
CREATE TABLE IF NOT EXISTS schema_migrations (
    name text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: ledger_exists
SELECT to_regclass('schema_migrations') IS NOT NULL

-- name: applied
SELECT name FROM schema_migrations ORDER BY name

-- name: record
INSERT INTO schema_migrations (name) VALUES ($1)
