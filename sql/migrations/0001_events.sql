-- The event store: the append log, the tag index, tombstones and the batch ingest function.

CREATE TABLE events (
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    id          bytea   NOT NULL,
    pubkey      bytea   NOT NULL,
    kind        integer NOT NULL,
    created_at  bigint  NOT NULL,
    -- '' for replaceable kinds, the first d tag ('' when absent) for addressable kinds,
    -- NULL for every other kind: (pubkey, kind, d_tag) is the address.
    d_tag       text,
    expires_at  bigint,
    raw         text    NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (id),
    CONSTRAINT events_id_len CHECK (octet_length(id) = 32),
    CONSTRAINT events_pubkey_len CHECK (octet_length(pubkey) = 32)
);
CREATE UNIQUE INDEX events_seq_idx ON events (seq);
CREATE UNIQUE INDEX events_address_idx ON events (pubkey, kind, d_tag) WHERE d_tag IS NOT NULL;
CREATE INDEX events_created_idx ON events (created_at DESC, id);
CREATE INDEX events_kind_created_idx ON events (kind, created_at DESC, id);
CREATE INDEX events_pubkey_kind_created_idx ON events (pubkey, kind, created_at DESC, id);
CREATE INDEX events_pubkey_created_idx ON events (pubkey, created_at DESC, id);
CREATE INDEX events_expires_idx ON events (expires_at) WHERE expires_at IS NOT NULL;

-- One row per single-letter tag with a value, denormalised so tag queries run on an index
-- without touching events. value is the tag value itself when it is at most 200 UTF-8 bytes
-- long, does not start with U+0001 and holds no U+0000 (which text cannot store); otherwise
-- U+0001 followed by the hex sha256 of the value. A btree never sees a value too large for
-- it, and a filter value is keyed the same way before comparison
-- (relay.storage.sqlfilter.tag_key). events.d_tag is keyed by the same rule.
CREATE TABLE event_tags (
    event_id   bytea   NOT NULL,
    name       text    NOT NULL,
    value      text    NOT NULL,
    kind       integer NOT NULL,
    pubkey     bytea   NOT NULL,
    created_at bigint  NOT NULL
);
CREATE INDEX event_tags_value_created_idx ON event_tags (name, value, created_at DESC, event_id);
CREATE INDEX event_tags_value_kind_created_idx
    ON event_tags (name, value, kind, created_at DESC, event_id);
CREATE INDEX event_tags_event_idx ON event_tags (event_id);

-- NIP-09 deletion by id: the target may arrive later, and is refused when its author matches.
CREATE TABLE deleted_events (
    id          bytea NOT NULL,
    pubkey      bytea NOT NULL,
    deletion_id bytea NOT NULL,
    PRIMARY KEY (id, pubkey)
);

-- NIP-09 deletion by address: every version up to deleted_up_to is gone and stays gone.
-- Deleting the current version of an address by id also raises the mark to its created_at,
-- so the versions it had replaced cannot come back.
CREATE TABLE deleted_addresses (
    pubkey        bytea   NOT NULL,
    kind          integer NOT NULL,
    d_tag         text    NOT NULL,
    deleted_up_to bigint  NOT NULL,
    deletion_id   bytea   NOT NULL,
    PRIMARY KEY (pubkey, kind, d_tag)
);

-- Store a batch of verified events in arrival order, applying the NIP-01 replace rules and
-- NIP-09 deletions exactly; returns one status per event:
--   0 stored, 1 duplicate, 2 deleted by id, 3 address deleted up to a later time,
--   4 a newer version of the address is stored.
-- Batches from every relay process are serialised by a transaction-scoped advisory lock, so
-- seq values become visible in order and a reader of "seq > last" never skips a row.
CREATE FUNCTION fitrelay_ingest(
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
