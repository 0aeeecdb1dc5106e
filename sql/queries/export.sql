-- Named queries of `fitrelay export-table` (tables and views of one schema).

-- name: list_tables
-- The tables, partitioned tables, views, materialized views and foreign tables of schema $1.
SELECT c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY c.relname;
