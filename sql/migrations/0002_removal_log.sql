-- The removal log, and arrival-order independence for versions deleted before they arrive.
-- fitrelay_ingest is replaced whole: it differs from 0001 only in the branch for an event
-- already deleted by id (status 2), which now raises the address mark for addressable kinds.

-- The other half of the log: every event removed from events (replaced, deleted, expired)
-- gets a row here with a seq drawn from the same sequence, so a reader of the log (the
-- indexer) learns of removals in order with insertions. The indexer prunes what it has read.
-- Writers hold advisory lock 7447001 while they change events, which keeps seq values
-- visible in order.
CREATE TABLE removed_events (
    seq        bigint  PRIMARY KEY,
    id         bytea   NOT NULL,
    pubkey     bytea   NOT NULL,
    kind       integer NOT NULL,
    d_tag      text,
    removed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION fitrelay_log_removals() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO removed_events (seq, id, pubkey, kind, d_tag)
    SELECT nextval(pg_get_serial_sequence('events', 'seq')), g.id, g.pubkey, g.kind, g.d_tag
    FROM gone g;
    PERFORM pg_notify('fitrelay_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_log_removals AFTER DELETE ON events
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_log_removals();

-- Store a batch of verified events in arrival order, applying the NIP-01 replace rules and
-- NIP-09 deletions exactly; returns one status per event:
--   0 stored, 1 duplicate, 2 deleted by id, 3 address deleted up to a later time,
--   4 a newer version of the address is stored.
-- Batches from every relay process are serialised by a transaction-scoped advisory lock, so
-- seq values become visible in order and a reader of "seq > last" never skips a row.
CREATE OR REPLACE FUNCTION fitrelay_ingest(
    p_ids bytea[], p_pubkeys bytea[], p_kinds integer[], p_created bigint[],
    p_dtags text[], p_expires bigint[], p_raws text[],
    p_tag_ev integer[], p_tag_names text[], p_tag_values text[],
    p_del_ev integer[], p_del_ids bytea[],
    p_adel_ev integer[], p_adel_kinds integer[], p_adel_dtags text[]
) RETURNS smallint[]
LANGUAGE plpgsql AS $$
DECLARE
    n        integer := coalesce(array_length(p_ids, 1), 0);
    status   smallint[] := array_fill(0::smallint, ARRAY[n]);
    i        integer;
    j        integer;
    cur      record;
    gone     record;
    stored   integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7447001);
    FOR i IN 1..n LOOP
        IF EXISTS (SELECT 1 FROM events WHERE id = p_ids[i]) THEN
            status[i] := 1;
            CONTINUE;
        END IF;
        IF EXISTS (SELECT 1 FROM deleted_events WHERE id = p_ids[i] AND pubkey = p_pubkeys[i]) THEN
            status[i] := 2;
            IF p_dtags[i] IS NOT NULL THEN
                -- A version deleted by id before it arrived: had it arrived first, it would
                -- have replaced the older versions and its deletion would have raised the
                -- address mark to its created_at. Do the same now, unless a version that
                -- beats it is stored, so the outcome does not depend on arrival order.
                SELECT id, created_at INTO cur FROM events
                WHERE pubkey = p_pubkeys[i] AND kind = p_kinds[i] AND d_tag = p_dtags[i];
                IF NOT FOUND OR cur.created_at < p_created[i]
                   OR (cur.created_at = p_created[i] AND cur.id > p_ids[i]) THEN
                    INSERT INTO deleted_addresses AS da
                        (pubkey, kind, d_tag, deleted_up_to, deletion_id)
                    SELECT p_pubkeys[i], p_kinds[i], p_dtags[i], p_created[i], deletion_id
                    FROM deleted_events WHERE id = p_ids[i] AND pubkey = p_pubkeys[i]
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
        IF p_dtags[i] IS NOT NULL THEN
            IF EXISTS (
                SELECT 1 FROM deleted_addresses
                WHERE pubkey = p_pubkeys[i] AND kind = p_kinds[i] AND d_tag = p_dtags[i]
                  AND deleted_up_to >= p_created[i]
            ) THEN
                status[i] := 3;
                CONTINUE;
            END IF;
            SELECT id, created_at INTO cur FROM events
            WHERE pubkey = p_pubkeys[i] AND kind = p_kinds[i] AND d_tag = p_dtags[i];
            IF FOUND THEN
                IF cur.created_at > p_created[i]
                   OR (cur.created_at = p_created[i] AND cur.id < p_ids[i]) THEN
                    status[i] := 4;
                    CONTINUE;
                END IF;
                DELETE FROM events WHERE id = cur.id;
                DELETE FROM event_tags WHERE event_id = cur.id;
            END IF;
        END IF;
        INSERT INTO events (id, pubkey, kind, created_at, d_tag, expires_at, raw)
        VALUES (p_ids[i], p_pubkeys[i], p_kinds[i], p_created[i], p_dtags[i], p_expires[i], p_raws[i]);
        stored := stored + 1;
        IF p_kinds[i] = 5 THEN
            -- Deletion by id: only the author's own events, never another deletion.
            FOR j IN 1..coalesce(array_length(p_del_ev, 1), 0) LOOP
                CONTINUE WHEN p_del_ev[j] <> i;
                DELETE FROM events
                WHERE id = p_del_ids[j] AND pubkey = p_pubkeys[i] AND kind <> 5
                RETURNING kind, d_tag, created_at INTO gone;
                IF FOUND THEN
                    DELETE FROM event_tags WHERE event_id = p_del_ids[j];
                    IF gone.d_tag IS NOT NULL THEN
                        INSERT INTO deleted_addresses AS da
                            (pubkey, kind, d_tag, deleted_up_to, deletion_id)
                        VALUES (p_pubkeys[i], gone.kind, gone.d_tag, gone.created_at, p_ids[i])
                        ON CONFLICT (pubkey, kind, d_tag) DO UPDATE
                        SET deleted_up_to = excluded.deleted_up_to,
                            deletion_id = excluded.deletion_id
                        WHERE da.deleted_up_to < excluded.deleted_up_to;
                    END IF;
                END IF;
                INSERT INTO deleted_events (id, pubkey, deletion_id)
                VALUES (p_del_ids[j], p_pubkeys[i], p_ids[i])
                ON CONFLICT DO NOTHING;
            END LOOP;
            -- Deletion by address (the coordinate's pubkey is the author, checked by the
            -- caller): every version up to the deletion's created_at.
            FOR j IN 1..coalesce(array_length(p_adel_ev, 1), 0) LOOP
                CONTINUE WHEN p_adel_ev[j] <> i;
                INSERT INTO deleted_addresses AS da (pubkey, kind, d_tag, deleted_up_to, deletion_id)
                VALUES (p_pubkeys[i], p_adel_kinds[j], p_adel_dtags[j], p_created[i], p_ids[i])
                ON CONFLICT (pubkey, kind, d_tag) DO UPDATE
                SET deleted_up_to = excluded.deleted_up_to, deletion_id = excluded.deletion_id
                WHERE da.deleted_up_to < excluded.deleted_up_to;
                FOR gone IN
                    DELETE FROM events
                    WHERE pubkey = p_pubkeys[i] AND kind = p_adel_kinds[j]
                      AND d_tag = p_adel_dtags[j] AND created_at <= p_created[i]
                    RETURNING id
                LOOP
                    DELETE FROM event_tags WHERE event_id = gone.id;
                END LOOP;
            END LOOP;
        END IF;
    END LOOP;
    IF stored > 0 THEN
        -- Tags of the events this batch stored and did not itself delete again.
        INSERT INTO event_tags (event_id, name, value, kind, pubkey, created_at)
        SELECT e.id, t.name, t.value, e.kind, e.pubkey, e.created_at
        FROM unnest(p_tag_ev, p_tag_names, p_tag_values) AS t (ev, name, value)
        JOIN events e ON e.id = p_ids[t.ev]
        WHERE status[t.ev] = 0;
        PERFORM pg_notify('fitrelay_events', (SELECT max(seq) FROM events)::text);
    END IF;
    RETURN status;
END;
$$;
