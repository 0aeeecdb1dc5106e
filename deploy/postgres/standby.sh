#!/bin/sh
# Entry point of a hot standby container: copy the primary once (pg_basebackup -R writes
# standby.signal and primary_conninfo), then run postgres with the arguments given.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA" -R -X stream -c fast; do
        echo "standby: the primary is not ready for a base backup; trying again" >&2
        rm -rf "${PGDATA:?}"/*
        sleep 5
    done
    chmod 700 "$PGDATA"
fi
exec postgres "$@"
