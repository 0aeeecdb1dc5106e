-- Queries of reads on streaming replicas (relay/storage/replicas.py). WAL positions are
-- bytes from 0/0, as bigint.

-- name: wal_position
-- On the primary: where WAL is being inserted. Read after a commit, or after a read of the
-- log, it is at or past the commit record of everything that commit or read saw.
SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint;

-- name: replay_position
-- On a standby: whether it is one, and how far it has replayed the primary's WAL (NULL on a
-- server that is not in recovery).
SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint;
