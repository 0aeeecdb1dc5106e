-- NIP-50 search documents, their word list, and multi-letter tags in event_tags.
--
-- search_documents holds one row per stored event of a searchable kind (33401, 33402 and,
-- when configured, 1): the event's words as the relay computed them
-- (relay.nostr.search.document_of), as a tsvector built with array_to_tsvector, so no
-- text-search parser, stemmer or locale has a say in what matches, and its title words for
-- ranking. Like event_tags it has no foreign key to events; unlike event_tags its rows are
-- removed by a trigger on every DELETE from events (replacement, NIP-09 deletion by id or
-- address, NIP-40 expiration, and any path added later), so a removed event can never be
-- found by search.
--
-- search_words is every word any document ever held (a word is not removed with its last
-- document: an unused word only widens a query with an alternative that matches nothing).
-- With pg_trgm, its trigram index finds the words close to a query word ("bentch" ->
-- "bench"); without pg_trgm the relay refuses search filters (CLOSED unsupported:) and
-- says why in its log, and documents are still written, so search works once pg_trgm and
-- the index are added (docs/operations.md).

DO $trgm$
BEGIN
    IF EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    ELSE
        RAISE NOTICE 'pg_trgm is not available: NIP-50 search stays off until it is installed';
    END IF;
END
$trgm$;

CREATE TABLE search_documents (
    event_id   bytea    NOT NULL,
    kind       integer  NOT NULL,
    pubkey     bytea    NOT NULL,
    created_at bigint   NOT NULL,
    title      text     NOT NULL,
    doc        tsvector NOT NULL,
    CONSTRAINT search_documents_pkey PRIMARY KEY (event_id)
);
CREATE INDEX search_documents_doc_idx ON search_documents USING gin (doc);

CREATE TABLE search_words (
    word text NOT NULL,
    CONSTRAINT search_words_pkey PRIMARY KEY (word)
);

DO $index$
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX search_words_trgm_idx ON search_words USING gin (word gin_trgm_ops);
    END IF;
END
$index$;

-- Whether two ASCII words are close by trigrams, as relay.nostr.search.close decides: the
-- three-character windows of '  ' || word || ' ' (pg_trgm's padding), compared as
-- integers, 10 * common >= 3 * union (pg_trgm's default threshold of 0.3, without floats).
CREATE FUNCTION fitrelay_trigrams(p_word text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(DISTINCT substr('  ' || p_word || ' ', i, 3))
    FROM generate_series(1, char_length(p_word) + 1) AS i
$$;

CREATE FUNCTION fitrelay_words_close(p_a text, p_b text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 10 * c.common >= 3 * (cardinality(t.a) + cardinality(t.b) - c.common)
    FROM (SELECT fitrelay_trigrams(p_a) AS a, fitrelay_trigrams(p_b) AS b) AS t
    CROSS JOIN LATERAL (
        SELECT count(*)::integer AS common
        FROM (SELECT unnest(t.a) INTERSECT SELECT unnest(t.b)) AS i
    ) AS c
$$;

CREATE FUNCTION fitrelay_drop_search_documents() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM search_documents WHERE event_id IN (SELECT g.id FROM gone g);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_drop_search_documents AFTER DELETE ON events
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_drop_search_documents();

-- fitrelay_ingest, then the search documents of the events it stored that are still stored
-- (one the same batch replaced or deleted again has none), in the same transaction and
-- under the same lock. p_doc_ev are positions in the batch, p_doc_titles their title
-- words; p_word_ev / p_words the words of each document, flattened.
CREATE FUNCTION fitrelay_ingest_documents(
    p_ids bytea[], p_pubkeys bytea[], p_kinds integer[], p_created bigint[],
    p_dtags text[], p_expires bigint[], p_raws text[],
    p_tag_ev integer[], p_tag_names text[], p_tag_values text[],
    p_del_ev integer[], p_del_ids bytea[],
    p_adel_ev integer[], p_adel_kinds integer[], p_adel_dtags text[],
    p_doc_ev integer[], p_doc_titles text[], p_word_ev integer[], p_words text[]
) RETURNS smallint[]
LANGUAGE plpgsql AS $$
DECLARE
    status smallint[];
BEGIN
    status := fitrelay_ingest(
        p_ids, p_pubkeys, p_kinds, p_created, p_dtags, p_expires, p_raws,
        p_tag_ev, p_tag_names, p_tag_values, p_del_ev, p_del_ids,
        p_adel_ev, p_adel_kinds, p_adel_dtags);
    INSERT INTO search_documents (event_id, kind, pubkey, created_at, title, doc)
    SELECT e.id, e.kind, e.pubkey, e.created_at, d.title,
           array_to_tsvector(coalesce(w.words, '{}'))
    FROM unnest(p_doc_ev, p_doc_titles) AS d (ev, title)
    JOIN events e ON e.id = p_ids[d.ev]
    LEFT JOIN (
        SELECT x.ev, array_agg(x.word) AS words
        FROM unnest(p_word_ev, p_words) AS x (ev, word) GROUP BY x.ev
    ) AS w ON w.ev = d.ev
    WHERE status[d.ev] = 0
    ON CONFLICT (event_id) DO NOTHING;
    INSERT INTO search_words (word)
    SELECT DISTINCT x.word FROM unnest(p_word_ev, p_words) AS x (ev, word)
    WHERE status[x.ev] = 0
    ON CONFLICT (word) DO NOTHING;
    RETURN status;
END;
$$;

-- Multi-letter tags: event_tags now also holds the tags named in [relay.tags] (by default
-- the fitness names exercise, template, team, activity, activity_type) for events of any
-- kind. Events stored before get theirs here, keyed as relay.storage.sqlfilter.tag_key
-- keys them. An event whose JSON holds the escape \u0000 cannot be read as jsonb and is
-- left out (its multi-letter tags stay unindexed).
INSERT INTO event_tags (event_id, name, value, kind, pubkey, created_at)
SELECT DISTINCT e.id, t.tag ->> 0,
       CASE WHEN octet_length(t.tag ->> 1) <= 200 AND left(t.tag ->> 1, 1) <> E'\x01'
            THEN t.tag ->> 1
            ELSE E'\x01' || encode(sha256(convert_to(t.tag ->> 1, 'UTF8')), 'hex') END,
       e.kind, e.pubkey, e.created_at
FROM events e
CROSS JOIN LATERAL jsonb_array_elements(e.raw::jsonb -> 'tags') AS t (tag)
WHERE e.raw NOT LIKE '%\\u0000%'
  AND e.raw LIKE ANY (ARRAY['%"exercise"%', '%"template"%', '%"team"%', '%"activity"%',
                            '%"activity_type"%'])
  AND jsonb_typeof(t.tag) = 'array'
  AND jsonb_array_length(t.tag) >= 2
  AND jsonb_typeof(t.tag -> 1) = 'string'
  AND t.tag ->> 0 IN ('exercise', 'template', 'team', 'activity', 'activity_type');
