-- Queries of the migration runner (relay/storage/migrate.py).

-- name: create_ledger
CREATE TABLE IF NOT EXISTS schema_migrations (
    name text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: lock
-- One migrating transaction at a time (the others wait, then find nothing left to do).
-- EXCLUSIVE needs more than SELECT and conflicts with every mode but the ACCESS SHARE a
-- reader takes, so no role that may only read the ledger can take or block it.
LOCK TABLE schema_migrations IN EXCLUSIVE MODE

-- name: ledger_exists
SELECT to_regclass('schema_migrations') IS NOT NULL

-- name: applied
SELECT name FROM schema_migrations ORDER BY name

-- name: record
INSERT INTO schema_migrations (name) VALUES ($1)

-- name: restrict_reader
-- Database-level privileges of fitrelay_reader (0008), which a cloned or restored database
-- does not carry over. Absent before 0008 is applied.
SELECT fitrelay_restrict_reader() WHERE to_regprocedure('fitrelay_restrict_reader()') IS NOT NULL
