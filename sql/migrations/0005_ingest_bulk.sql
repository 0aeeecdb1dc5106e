-- Set-based batch ingest. fitrelay_ingest keeps its arguments, its statuses and every effect
-- of the per-event loop of 0002 (rows, tombstones, removal log, seq values and their order,
-- NOTIFY). For a batch of some size it now calls fitrelay_ingest_bulk, which judges the whole
-- batch in one statement, stores in one INSERT the events nothing else in the batch can
-- touch, and runs the per-event rules only for the others.
--
-- fitrelay_ingest_serial is the loop of 0002 kept under another name: the path of small
-- batches, and the reference the tests compare fitrelay_ingest_bulk with.

ALTER FUNCTION fitrelay_ingest(
    bytea[], bytea[], integer[], bigint[], text[], bigint[], text[],
    integer[], text[], text[], integer[], bytea[], integer[], integer[], text[]
) RENAME TO fitrelay_ingest_serial;

-- fitrelay_ingest_bulk: what fitrelay_ingest_serial does, for a batch of any size, with the
-- work done over the whole batch where the order of events cannot matter.
--
-- How: the batch is judged in one statement against the state before it. An event is
-- independent when nothing else in the batch can change what happens to it:
--   * a regular event other than a deletion, when no event with an address, no deletion and
--     no e tag of a deletion in the batch has its id: a duplicate if its id is stored or an
--     earlier copy in the batch gets stored, deleted if its id has a tombstone of its author,
--     stored otherwise;
--   * a replaceable or addressable event alone in the batch at its address and with its id,
--     without a tombstone, that no deletion of the batch names (by its id, by the id of the
--     version stored at its address, or by its address): a duplicate, under the address mark,
--     older than the stored version, or stored when its address is empty;
--   * in both cases, unless its id is stored at another address (which real events, whose id
--     fixes their address, never are), where the loop might remove it.
-- An independent event changes nothing the others look at: it only adds rows whose id and
-- address no other event of the batch has, and removes nothing. The others (deletions,
-- versions that replace a stored one, events deleted by id before they arrive, several events
-- of one id or address) go through the loop of 0002, in arrival order. An independent event
-- to store takes its seq from the sequence just before the loop reaches the next event after
-- it, which is when the loop would have drawn it; they are all inserted together at the end.
-- So statuses, rows, seq values and the removal log, interleaved, are exactly the loop's.
--
-- Plans: custom plans, made with the tables as they are now (a generic plan is kept for the
-- life of a connection and can go on probing a grown table through the index it chose when
-- the table was small), and no JIT. A custom plan copies the arrays it mentions, so the loop
-- reads the current event into scalars first and its statements mention no array; the
-- statements over the whole batch read the arrays with unnest and join them on position.
CREATE FUNCTION fitrelay_ingest_bulk(
    p_ids bytea[], p_pubkeys bytea[], p_kinds integer[], p_created bigint[],
    p_dtags text[], p_expires bigint[], p_raws text[],
    p_tag_ev integer[], p_tag_names text[], p_tag_values text[],
    p_del_ev integer[], p_del_ids bytea[],
    p_adel_ev integer[], p_adel_kinds integer[], p_adel_dtags text[]
) RETURNS smallint[]
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan SET jit = off AS $$
DECLARE
    n         integer := coalesce(array_length(p_ids, 1), 0);
    status    smallint[];
    looped    integer[];         -- positions that go through the loop, in arrival order
    bulk      integer[];         -- positions of the independent events to store, in order
    in_bulk   boolean[];         -- by position: stored by the bulk INSERT
    bulk_seq  bigint[] := '{}';  -- the seq of each of bulk, drawn in arrival order
    drawn     integer := 0;
    k         integer;
    log_seq   regclass;
    i         integer;
    j         integer;
    cur       record;
    gone      record;
    stored    integer := 0;
    e_id      bytea;             -- the event the loop is at
    e_pubkey  bytea;
    e_kind    integer;
    e_created bigint;
    e_dtag    text;
    e_expires bigint;
    e_raw     text;
    t_id      bytea;             -- the deletion target the loop is at
    t_kind    integer;
    t_dtag    text;
BEGIN
    PERFORM pg_advisory_xact_lock(7447001);
    IF n = 0 THEN
        RETURN '{}';
    END IF;
    log_seq := pg_get_serial_sequence('events', 'seq')::regclass;
    -- Judge the batch in one statement: outcome -1 for an event the loop must handle, else
    -- its status. The lookups are scalar or LATERAL subqueries on a key: one probe per row.
    WITH probed AS MATERIALIZED (
        SELECT b.pos::integer AS pos, b.id, b.pubkey, b.kind, b.created, b.dtag,
               -- NULL when its id is not stored, true when stored at another address
               (SELECT e.d_tag IS NOT NULL
                       AND (e.pubkey, e.kind, e.d_tag) IS DISTINCT FROM (b.pubkey, b.kind, b.dtag)
                FROM events e WHERE e.id = b.id) AS elsewhere,
               (SELECT true FROM deleted_events d WHERE d.id = b.id AND d.pubkey = b.pubkey)
                   IS NOT NULL AS tombstoned,
               (SELECT da.deleted_up_to FROM deleted_addresses da
                WHERE da.pubkey = b.pubkey AND da.kind = b.kind AND da.d_tag = b.dtag) AS mark,
               v.id AS cur_id, v.created_at AS cur_created
        FROM unnest(p_ids, p_pubkeys, p_kinds, p_created, p_dtags)
             WITH ORDINALITY AS b (id, pubkey, kind, created, dtag, pos)
        LEFT JOIN LATERAL (
            SELECT e.id, e.created_at FROM events e
            WHERE e.pubkey = b.pubkey AND e.kind = b.kind AND e.d_tag = b.dtag
            LIMIT 1
        ) AS v ON true
    ), marked AS (
        SELECT *, elsewhere IS NOT NULL AS known FROM probed
    ), targets AS (
        -- What the deletions of the batch name: ids, and addresses (with their author).
        SELECT t.id FROM unnest(p_del_ids) AS t (id)
    ), address_targets AS (
        SELECT p.pubkey, a.kind, a.dtag
        FROM unnest(p_adel_ev, p_adel_kinds, p_adel_dtags) AS a (ev, kind, dtag)
        JOIN marked p ON p.pos = a.ev
    ), judged AS (
        SELECT pos, CASE
            WHEN kind = 5 THEN -1
            -- Its id is stored at an address other than its own, which the loop may empty.
            WHEN elsewhere THEN -1
            WHEN dtag IS NULL THEN CASE
                -- A regular event: only an event with its id can change its fate.
                WHEN bool_or(dtag IS NOT NULL OR kind = 5) OVER same_id
                     OR id IN (SELECT id FROM targets) THEN -1
                WHEN known THEN 1
                WHEN min(pos) FILTER (WHERE NOT tombstoned) OVER same_id < pos THEN 1
                WHEN tombstoned THEN 2
                ELSE 0
            END
            -- An event with an address: alone at its address and its id in the batch, and
            -- nothing in the batch deletes it, its address or the version stored there.
            WHEN count(*) OVER same_id > 1 OR count(*) OVER same_address > 1 OR tombstoned
                 OR id IN (SELECT id FROM targets) OR cur_id IN (SELECT id FROM targets)
                 OR (pubkey, kind, dtag) IN (SELECT pubkey, kind, dtag FROM address_targets)
                THEN -1
            WHEN known THEN 1
            WHEN mark >= created THEN 3
            WHEN cur_id IS NULL THEN 0
            WHEN cur_created > created OR (cur_created = created AND cur_id < id) THEN 4
            -- It replaces the stored version, whose removal the loop logs before it.
            ELSE -1
        END::smallint AS outcome
        FROM marked
        WINDOW same_id AS (PARTITION BY id), same_address AS (PARTITION BY pubkey, kind, dtag)
    )
    SELECT array_agg(greatest(outcome, 0::smallint) ORDER BY pos),
           coalesce(array_agg(pos ORDER BY pos) FILTER (WHERE outcome < 0), '{}'),
           coalesce(array_agg(pos ORDER BY pos) FILTER (WHERE outcome = 0), '{}'),
           array_agg(outcome = 0 ORDER BY pos)
    INTO status, looped, bulk, in_bulk
    FROM judged;

    FOREACH i IN ARRAY looped LOOP
        -- The independent events to store before this one take their seq now.
        k := 0;
        WHILE drawn + k < cardinality(bulk) AND bulk[drawn + k + 1] < i LOOP
            k := k + 1;
        END LOOP;
        IF k > 0 THEN
            bulk_seq := bulk_seq
                || ARRAY(SELECT nextval(log_seq) FROM generate_series(1, k) ORDER BY 1);
            drawn := drawn + k;
        END IF;
        e_id := p_ids[i];
        e_pubkey := p_pubkeys[i];
        e_kind := p_kinds[i];
        e_created := p_created[i];
        e_dtag := p_dtags[i];
        e_expires := p_expires[i];
        e_raw := p_raws[i];
        IF EXISTS (SELECT 1 FROM events WHERE id = e_id) THEN
            status[i] := 1;
            CONTINUE;
        END IF;
        IF EXISTS (SELECT 1 FROM deleted_events WHERE id = e_id AND pubkey = e_pubkey) THEN
            status[i] := 2;
            IF e_dtag IS NOT NULL THEN
                -- A version deleted by id before it arrived: had it arrived first, it would
                -- have replaced the older versions and its deletion would have raised the
                -- address mark to its created_at. Do the same now, unless a version that
                -- beats it is stored, so the outcome does not depend on arrival order.
                SELECT id, created_at INTO cur FROM events
                WHERE pubkey = e_pubkey AND kind = e_kind AND d_tag = e_dtag;
                IF NOT FOUND OR cur.created_at < e_created
                   OR (cur.created_at = e_created AND cur.id > e_id) THEN
                    INSERT INTO deleted_addresses AS da
                        (pubkey, kind, d_tag, deleted_up_to, deletion_id)
                    SELECT e_pubkey, e_kind, e_dtag, e_created, deletion_id
                    FROM deleted_events WHERE id = e_id AND pubkey = e_pubkey
                    ON CONFLICT (pubkey, kind, d_tag) DO UPDATE
                    SET deleted_up_to = excluded.deleted_up_to,
                        deletion_id = excluded.deletion_id
                    WHERE da.deleted_up_to < excluded.deleted_up_to;
                    IF FOUND THEN
                        DELETE FROM event_tags WHERE event_id = cur.id;
                        DELETE FROM events WHERE id = cur.id;
                    END IF;
                END IF;
            END IF;
            CONTINUE;
        END IF;
        IF e_dtag IS NOT NULL THEN
            IF EXISTS (
                SELECT 1 FROM deleted_addresses
                WHERE pubkey = e_pubkey AND kind = e_kind AND d_tag = e_dtag
                  AND deleted_up_to >= e_created
            ) THEN
                status[i] := 3;
                CONTINUE;
            END IF;
            SELECT id, created_at INTO cur FROM events
            WHERE pubkey = e_pubkey AND kind = e_kind AND d_tag = e_dtag;
            IF FOUND THEN
                IF cur.created_at > e_created
                   OR (cur.created_at = e_created AND cur.id < e_id) THEN
                    status[i] := 4;
                    CONTINUE;
                END IF;
                DELETE FROM events WHERE id = cur.id;
                DELETE FROM event_tags WHERE event_id = cur.id;
            END IF;
        END IF;
        INSERT INTO events (id, pubkey, kind, created_at, d_tag, expires_at, raw)
        VALUES (e_id, e_pubkey, e_kind, e_created, e_dtag, e_expires, e_raw);
        stored := stored + 1;
        IF e_kind = 5 THEN
            -- Deletion by id: only the author's own events, never another deletion.
            FOR j IN 1..coalesce(array_length(p_del_ev, 1), 0) LOOP
                CONTINUE WHEN p_del_ev[j] <> i;
                t_id := p_del_ids[j];
                DELETE FROM events
                WHERE id = t_id AND pubkey = e_pubkey AND kind <> 5
                RETURNING kind, d_tag, created_at INTO gone;
                IF FOUND THEN
                    DELETE FROM event_tags WHERE event_id = t_id;
                    IF gone.d_tag IS NOT NULL THEN
                        INSERT INTO deleted_addresses AS da
                            (pubkey, kind, d_tag, deleted_up_to, deletion_id)
                        VALUES (e_pubkey, gone.kind, gone.d_tag, gone.created_at, e_id)
                        ON CONFLICT (pubkey, kind, d_tag) DO UPDATE
                        SET deleted_up_to = excluded.deleted_up_to,
                            deletion_id = excluded.deletion_id
                        WHERE da.deleted_up_to < excluded.deleted_up_to;
                    END IF;
                END IF;
                INSERT INTO deleted_events (id, pubkey, deletion_id)
                VALUES (t_id, e_pubkey, e_id)
                ON CONFLICT DO NOTHING;
            END LOOP;
            -- Deletion by address (the coordinate's pubkey is the author, checked by the
            -- caller): every version up to the deletion's created_at.
            FOR j IN 1..coalesce(array_length(p_adel_ev, 1), 0) LOOP
                CONTINUE WHEN p_adel_ev[j] <> i;
                t_kind := p_adel_kinds[j];
                t_dtag := p_adel_dtags[j];
                INSERT INTO deleted_addresses AS da (pubkey, kind, d_tag, deleted_up_to, deletion_id)
                VALUES (e_pubkey, t_kind, t_dtag, e_created, e_id)
                ON CONFLICT (pubkey, kind, d_tag) DO UPDATE
                SET deleted_up_to = excluded.deleted_up_to, deletion_id = excluded.deletion_id
                WHERE da.deleted_up_to < excluded.deleted_up_to;
                FOR gone IN
                    DELETE FROM events
                    WHERE pubkey = e_pubkey AND kind = t_kind
                      AND d_tag = t_dtag AND created_at <= e_created
                    RETURNING id
                LOOP
                    DELETE FROM event_tags WHERE event_id = gone.id;
                END LOOP;
            END LOOP;
        END IF;
    END LOOP;
    IF cardinality(bulk) > 0 THEN
        k := cardinality(bulk) - drawn;
        IF k > 0 THEN
            bulk_seq := bulk_seq
                || ARRAY(SELECT nextval(log_seq) FROM generate_series(1, k) ORDER BY 1);
        END IF;
        INSERT INTO events (seq, id, pubkey, kind, created_at, d_tag, expires_at, raw)
        OVERRIDING SYSTEM VALUE
        SELECT s.seq, b.id, b.pubkey, b.kind, b.created_at, b.dtag, b.expires, b.raw
        FROM unnest(bulk, bulk_seq) AS s (pos, seq)
        JOIN unnest(p_ids, p_pubkeys, p_kinds, p_created, p_dtags, p_expires, p_raws)
             WITH ORDINALITY AS b (id, pubkey, kind, created_at, dtag, expires, raw, pos)
          ON b.pos = s.pos;
        stored := stored + cardinality(bulk);
    END IF;
    IF stored > 0 THEN
        -- Tags of the events this batch stored and did not itself delete again (an
        -- independent event never is).
        INSERT INTO event_tags (event_id, name, value, kind, pubkey, created_at)
        SELECT b.id, t.name, t.value, b.kind, b.pubkey, b.created_at
        FROM unnest(p_tag_ev, p_tag_names, p_tag_values) AS t (ev, name, value)
        JOIN unnest(p_ids, p_pubkeys, p_kinds, p_created, in_bulk)
             WITH ORDINALITY AS b (id, pubkey, kind, created_at, in_bulk, pos)
          ON b.pos = t.ev
        WHERE b.in_bulk
        UNION ALL
        SELECT e.id, t.name, t.value, e.kind, e.pubkey, e.created_at
        FROM unnest(p_tag_ev, p_tag_names, p_tag_values) AS t (ev, name, value)
        JOIN unnest(p_ids, status, in_bulk) WITH ORDINALITY AS b (id, status, in_bulk, pos)
          ON b.pos = t.ev
        CROSS JOIN LATERAL (
            SELECT e.id, e.kind, e.pubkey, e.created_at FROM events e WHERE e.id = b.id LIMIT 1
        ) AS e
        WHERE b.status = 0 AND NOT b.in_bulk;
        PERFORM pg_notify('fitrelay_events', (SELECT max(seq) FROM events)::text);
    END IF;
    RETURN status;
END;
$$;

-- Store a batch of verified events in arrival order, applying the NIP-01 replace rules and
-- NIP-09 deletions exactly; returns one status per event:
--   0 stored, 1 duplicate, 2 deleted by id, 3 address deleted up to a later time,
--   4 a newer version of the address is stored.
-- Batches from every relay process are serialised by a transaction-scoped advisory lock, so
-- seq values become visible in order and a reader of "seq > last" never skips a row.
-- A small batch goes through the loop, whose cost grows with the batch but which has no
-- fixed cost of judging the batch as a whole; a larger one through fitrelay_ingest_bulk.
CREATE OR REPLACE FUNCTION fitrelay_ingest(
    p_ids bytea[], p_pubkeys bytea[], p_kinds integer[], p_created bigint[],
    p_dtags text[], p_expires bigint[], p_raws text[],
    p_tag_ev integer[], p_tag_names text[], p_tag_values text[],
    p_del_ev integer[], p_del_ids bytea[],
    p_adel_ev integer[], p_adel_kinds integer[], p_adel_dtags text[]
) RETURNS smallint[]
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(array_length(p_ids, 1), 0) < 24 THEN
        RETURN fitrelay_ingest_serial(
            p_ids, p_pubkeys, p_kinds, p_created, p_dtags, p_expires, p_raws,
            p_tag_ev, p_tag_names, p_tag_values, p_del_ev, p_del_ids,
            p_adel_ev, p_adel_kinds, p_adel_dtags);
    END IF;
    RETURN fitrelay_ingest_bulk(
        p_ids, p_pubkeys, p_kinds, p_created, p_dtags, p_expires, p_raws,
        p_tag_ev, p_tag_names, p_tag_values, p_del_ev, p_del_ids,
        p_adel_ev, p_adel_kinds, p_adel_dtags);
END;
$$;
