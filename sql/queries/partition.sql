-- The opt-in partitioned layout of events (relay/storage/partition.py, docs/scaling.md):
-- events range-partitioned by created_at, one partition per calendar month (UTC) named
-- events_pYYYYMM, and events_default for every timestamp no month partition covers.
-- Format as in events.sql. Not a numbered migration: nothing here runs unless the operator
-- opts in ([db] partitioning = "monthly" or `fitrelay partition convert`).
--
-- What changes against the unpartitioned table of 0001:
--   * PostgreSQL wants the partition key in every unique index of a partitioned table, so
--     the primary key is (id, created_at). An id stays unique across partitions through
--     event_keys (id primary key, created_at), written by statement triggers in the same
--     statement as every INSERT into and DELETE from events: a second row with a stored id
--     fails with a unique violation, whatever partition it would land in.
--   * events_address_idx and events_seq_idx are no longer UNIQUE (they cannot be): one
--     version per address and one row per seq are kept by the ingest functions, which
--     change events only under the log lock (0008), as before.
--   * Every other index, the CHECKs and both DELETE triggers (the removal log of 0002, the
--     search documents of 0011) are on the partitioned table, so on every partition.

-- name: is_partitioned
-- Whether events is the partitioned table.
SELECT relkind = 'p' FROM pg_class WHERE oid = 'events'::regclass;

-- name: functions
-- The functions of the layout (replaced whole on every conversion or start that opts in).
CREATE OR REPLACE FUNCTION fitrelay_month_bounds(p_month date, OUT lo bigint, OUT hi bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT extract(epoch FROM date_trunc('month', p_month)::timestamp)::bigint,
           extract(epoch FROM (date_trunc('month', p_month) + interval '1 month')::timestamp)::bigint
$$;

-- The calendar month (UTC) of a Unix time, NULL outside the years partitions are made for
-- (2000 to 2999): such events live in the default partition.
CREATE OR REPLACE FUNCTION fitrelay_month_of(p_at bigint) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_at >= 946684800 AND p_at < 32503680000
                THEN date_trunc('month', to_timestamp(p_at) AT TIME ZONE 'UTC')::date END
$$;

-- Make the partition of one month unless one covers it: its rows are moved out of the
-- default partition first (PostgreSQL refuses to attach a range the default holds rows
-- of), in this transaction and under the log lock, so no writer runs meanwhile. The rows
-- keep their seq and nothing is logged as removed: they stay stored. Returns whether it
-- made the partition.
CREATE OR REPLACE FUNCTION fitrelay_add_month(p_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    b     record;
    part  text := format('events_p%s', to_char(p_month, 'YYYYMM'));
BEGIN
    SELECT * INTO b FROM fitrelay_month_bounds(p_month);
    IF EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'events'::regclass AND c.relname = part) THEN
        RETURN false;
    END IF;
    LOCK TABLE fitrelay_log_lock IN EXCLUSIVE MODE;
    IF EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'events'::regclass AND c.relname = part) THEN
        RETURN false;
    END IF;
    IF to_regclass(part) IS NOT NULL THEN
        RAISE EXCEPTION 'table % exists but is not a partition of events (a detached month?)',
            part;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (created_at >= %s AND created_at < %s)',
                   part, part || '_range', b.lo, b.hi);
    -- Straight from partition to partition: no trigger of events fires, the keys stay.
    EXECUTE format('INSERT INTO %I SELECT * FROM events_default'
                   ' WHERE created_at >= %s AND created_at < %s', part, b.lo, b.hi);
    EXECUTE format('DELETE FROM events_default WHERE created_at >= %s AND created_at < %s',
                   b.lo, b.hi);
    EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                   part, b.lo, b.hi);
    -- The CHECK let ATTACH skip its scan of the new partition; the bound replaces it.
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_range');
    RETURN true;
END;
$$;

-- The partitions of this month and the p_ahead months after it; returns how many it made.
CREATE OR REPLACE FUNCTION fitrelay_keep_partitions(p_now bigint, p_ahead integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    made integer := 0;
    m    integer;
BEGIN
    FOR m IN 0..greatest(p_ahead, 0) LOOP
        IF fitrelay_add_month((fitrelay_month_of(p_now) + make_interval(months => m))::date) THEN
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END;
$$;

-- Keys of the events a statement stored or removed (see event_keys above).
CREATE OR REPLACE FUNCTION fitrelay_add_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_keys (id, created_at) SELECT a.id, a.created_at FROM added a;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION fitrelay_drop_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_keys WHERE id IN (SELECT g.id FROM gone g);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION fitrelay_truncate_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE event_keys;
    RETURN NULL;
END;
$$;

-- Detach (and keep, as plain tables) the month partitions wholly before p_before: their
-- events leave the relay's view (REQ, COUNT, export, the indexer's tables stay as they
-- are) and their keys go, so they could be stored again. Returns the detached tables.
CREATE OR REPLACE FUNCTION fitrelay_detach_partitions(p_before bigint) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    LOCK TABLE fitrelay_log_lock IN EXCLUSIVE MODE;
    FOR part IN
        SELECT c.relname::text AS name, b.hi
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL fitrelay_month_bounds(to_date(substr(c.relname, 9), 'YYYYMM')) AS b
        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{6}$'
          AND b.hi <= p_before
        ORDER BY c.relname
    LOOP
        EXECUTE format('DELETE FROM event_keys k USING %I e WHERE k.id = e.id', part.name);
        EXECUTE format('ALTER TABLE events DETACH PARTITION %I', part.name);
        RETURN NEXT part.name;
    END LOOP;
END;
$$;

-- name: convert
-- Rebuild events as the partitioned table, in one transaction: the same rows with the same
-- seq, the log's sequence where it was, a partition for every month (2000-2999) that holds
-- events, the default partition for the rest. Takes the log lock and locks events out for
-- its duration (it copies every row: minutes per million events).
DO $convert$
DECLARE
    old_seq  regclass := pg_get_serial_sequence('events', 'seq')::regclass;
    last     bigint;
    called   boolean;
    grant_   record;
    m        date;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'events'::regclass) = 'p' THEN
        RETURN;
    END IF;
    LOCK TABLE fitrelay_log_lock IN EXCLUSIVE MODE;
    LOCK TABLE events IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('SELECT last_value, is_called FROM %s', old_seq) INTO last, called;
    ALTER TABLE events RENAME TO events_unpartitioned;
    ALTER TABLE events_unpartitioned RENAME CONSTRAINT events_pkey TO events_unpartitioned_pkey;
    ALTER INDEX events_seq_idx RENAME TO events_unpartitioned_seq_idx;
    ALTER INDEX events_address_idx RENAME TO events_unpartitioned_address_idx;
    ALTER INDEX events_created_idx RENAME TO events_unpartitioned_created_idx;
    ALTER INDEX events_kind_created_idx RENAME TO events_unpartitioned_kind_created_idx;
    ALTER INDEX events_pubkey_kind_created_idx
        RENAME TO events_unpartitioned_pubkey_kind_created_idx;
    ALTER INDEX events_pubkey_created_idx RENAME TO events_unpartitioned_pubkey_created_idx;
    ALTER INDEX events_expires_idx RENAME TO events_unpartitioned_expires_idx;

    CREATE TABLE events (
        seq         bigint GENERATED ALWAYS AS IDENTITY,
        id          bytea   NOT NULL,
        pubkey      bytea   NOT NULL,
        kind        integer NOT NULL,
        created_at  bigint  NOT NULL,
        d_tag       text,
        expires_at  bigint,
        raw         text    NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT events_pkey PRIMARY KEY (id, created_at),
        CONSTRAINT events_id_len CHECK (octet_length(id) = 32),
        CONSTRAINT events_pubkey_len CHECK (octet_length(pubkey) = 32)
    ) PARTITION BY RANGE (created_at);
    CREATE TABLE events_default PARTITION OF events DEFAULT;
    CREATE INDEX events_seq_idx ON events (seq);
    CREATE INDEX events_address_idx ON events (pubkey, kind, d_tag) WHERE d_tag IS NOT NULL;
    CREATE INDEX events_created_idx ON events (created_at DESC, id);
    CREATE INDEX events_kind_created_idx ON events (kind, created_at DESC, id);
    CREATE INDEX events_pubkey_kind_created_idx ON events (pubkey, kind, created_at DESC, id);
    CREATE INDEX events_pubkey_created_idx ON events (pubkey, created_at DESC, id);
    CREATE INDEX events_expires_idx ON events (expires_at) WHERE expires_at IS NOT NULL;

    CREATE TABLE event_keys (
        id         bytea  NOT NULL,
        created_at bigint NOT NULL,
        CONSTRAINT event_keys_pkey PRIMARY KEY (id)
    );
    REVOKE ALL ON event_keys FROM PUBLIC;

    CREATE TRIGGER events_add_keys AFTER INSERT ON events
        REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_add_keys();
    CREATE TRIGGER events_drop_keys AFTER DELETE ON events
        REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_drop_keys();
    CREATE TRIGGER events_truncate_keys AFTER TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_truncate_keys();
    CREATE TRIGGER events_log_removals AFTER DELETE ON events
        REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_log_removals();
    CREATE TRIGGER events_drop_search_documents AFTER DELETE ON events
        REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_drop_search_documents();

    -- Whoever could read or write the old table can this one (fitrelay_reader: SELECT).
    FOR grant_ IN
        SELECT a.privilege_type, r.rolname
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'events_unpartitioned'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON events TO %I', grant_.privilege_type, grant_.rolname);
    END LOOP;

    FOR m IN
        SELECT DISTINCT fitrelay_month_of(created_at) FROM events_unpartitioned
        WHERE fitrelay_month_of(created_at) IS NOT NULL
    LOOP
        PERFORM fitrelay_add_month(m);
    END LOOP;
    INSERT INTO events (seq, id, pubkey, kind, created_at, d_tag, expires_at, raw, received_at)
    OVERRIDING SYSTEM VALUE
    SELECT seq, id, pubkey, kind, created_at, d_tag, expires_at, raw, received_at
    FROM events_unpartitioned ORDER BY seq;
    PERFORM setval(pg_get_serial_sequence('events', 'seq')::regclass, last, called);
    DROP TABLE events_unpartitioned;
END
$convert$;

-- name: keep
-- The partitions of this month and the $2 months after it; returns how many were made.
SELECT fitrelay_keep_partitions($1::bigint, $2::integer);

-- name: keep_one
-- The partition of the $2-th month after the month of $1; returns whether it was made.
SELECT fitrelay_add_month((fitrelay_month_of($1::bigint) + make_interval(months => $2::integer))::date);

-- name: detach
-- Detach the month partitions that end at or before $1 (a Unix time); returns their names.
SELECT fitrelay_detach_partitions($1::bigint) AS name;

-- name: status
-- Every partition of events: its name, its bounds and an estimate of its rows.
SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bounds,
       greatest(c.reltuples, 0)::bigint AS rows_estimate,
       pg_total_relation_size(c.oid) AS bytes
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass
ORDER BY c.relname;
