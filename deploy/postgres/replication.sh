#!/bin/sh
# Run once by the postgres image when the primary's data directory is created
# (/docker-entrypoint-initdb.d): a role that may stream WAL, and the pg_hba.conf line that
# lets standbys on the compose network use it with a password.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$REPLICATION_PASSWORD" \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
