-- NIP-50 search documents, their word list, and the bookkeeping of multi-letter tags in
-- event_tags. event_tags itself is unchanged: it now also holds the tags with a name listed
-- in [relay.tags] (exercise, template, ... by default), for events of every kind.
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

-- id, kind, pubkey, created_at and expires_at are the event's, named as in events, so a
-- search is filtered and ranked here and reads events only for the best few.
CREATE TABLE search_documents (
    id         bytea    NOT NULL,
    kind       integer  NOT NULL,
    pubkey     bytea    NOT NULL,
    created_at bigint   NOT NULL,
    expires_at bigint,
    title      text     NOT NULL,
    doc        tsvector NOT NULL,
    CONSTRAINT search_documents_pkey PRIMARY KEY (id)
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
    DELETE FROM search_documents WHERE id IN (SELECT g.id FROM gone g);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_drop_search_documents AFTER DELETE ON events
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION fitrelay_drop_search_documents();

-- The search documents of those of p_ids[p_doc_ev] that are stored and have none yet:
-- p_doc_titles their title words, p_doc_vectors their words as tsvector input (each word
-- once, at its position, title words weighted A and tag words B:
-- relay.nostr.search.Document.vector); p_words all their words, for search_words.
CREATE FUNCTION fitrelay_add_documents(
    p_ids bytea[], p_doc_ev integer[], p_doc_titles text[], p_doc_vectors text[],
    p_words text[]
) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO search_documents (id, kind, pubkey, created_at, expires_at, title, doc)
    SELECT e.id, e.kind, e.pubkey, e.created_at, e.expires_at, d.title, d.vector::tsvector
    FROM unnest(p_doc_ev, p_doc_titles, p_doc_vectors) AS d (ev, title, vector)
    JOIN events e ON e.id = p_ids[d.ev]
    ON CONFLICT (id) DO NOTHING;
    INSERT INTO search_words (word)
    SELECT DISTINCT x.word FROM unnest(p_words) AS x (word)
    ON CONFLICT (word) DO NOTHING;
$$;

-- fitrelay_ingest, then the search documents of the events it stored that are still stored
-- (one the same batch replaced or deleted again has none), in the same transaction and
-- under the same lock.
CREATE FUNCTION fitrelay_ingest_documents(
    p_ids bytea[], p_pubkeys bytea[], p_kinds integer[], p_created bigint[],
    p_dtags text[], p_expires bigint[], p_raws text[],
    p_tag_ev integer[], p_tag_names text[], p_tag_values text[],
    p_del_ev integer[], p_del_ids bytea[],
    p_adel_ev integer[], p_adel_kinds integer[], p_adel_dtags text[],
    p_doc_ev integer[], p_doc_titles text[], p_doc_vectors text[], p_words text[]
) RETURNS smallint[]
LANGUAGE plpgsql AS $$
DECLARE
    status smallint[];
BEGIN
    status := fitrelay_ingest(
        p_ids, p_pubkeys, p_kinds, p_created, p_dtags, p_expires, p_raws,
        p_tag_ev, p_tag_names, p_tag_values, p_del_ev, p_del_ids,
        p_adel_ev, p_adel_kinds, p_adel_dtags);
    PERFORM fitrelay_add_documents(p_ids, p_doc_ev, p_doc_titles, p_doc_vectors, p_words);
    RETURN status;
END;
$$;

-- What the stored events are indexed for, so that a start with another [relay.tags] or
-- [relay.search] indexes the stored events for what was added (relay.storage.indexing):
-- the multi-letter tag names event_tags holds for every event, and the kinds every stored
-- event of which has its search document.
CREATE TABLE indexed_tag_names (
    name text NOT NULL,
    CONSTRAINT indexed_tag_names_pkey PRIMARY KEY (name)
);
CREATE TABLE search_kinds (
    kind integer NOT NULL,
    CONSTRAINT search_kinds_pkey PRIMARY KEY (kind)
);
-- Both start empty: the first start indexes the events stored before this migration.
