-- Freshness: the fetcher's record of re-checks upstream, and list members in its queue.

-- The members of fitness lists (30003/30004 'a' tags) that name an exercise or a template
-- not indexed here join the unresolved references, and so the fetcher's queue
-- (missing_references). A member needs no link column: it counts as resolved as soon as its
-- exercise or template is indexed.
CREATE OR REPLACE VIEW fitness.unresolved_references AS
    SELECT 'template_set' AS source, template_pubkey || ':' || template_d AS source_key,
           33401 AS kind, exercise_pubkey AS pubkey, exercise_d AS d, exercise_ref AS raw,
           relay_hint
    FROM fitness.template_sets WHERE exercise_event_id IS NULL
    UNION ALL
    SELECT 'workout_set', workout_event_id, 33401, exercise_pubkey, exercise_d, exercise_ref,
           relay_hint
    FROM fitness.workout_sets WHERE exercise_event_id IS NULL
    UNION ALL
    SELECT 'workout_template', event_id, 33402, template_pubkey, template_d, template_ref,
           template_relay
    FROM fitness.workouts WHERE template_ref IS NOT NULL AND template_event_id IS NULL
    UNION ALL
    SELECT 'list_item', i.list_kind || ':' || i.list_pubkey || ':' || i.list_d, i.member_kind,
           i.member_pubkey, i.member_d, i.member_ref, i.relay_hint
    FROM fitness.list_items i
    WHERE (i.member_kind = 33401 AND NOT EXISTS (
               SELECT 1 FROM fitness.exercises e
               WHERE e.pubkey = i.member_pubkey AND e.d = i.member_d))
       OR (i.member_kind = 33402 AND NOT EXISTS (
               SELECT 1 FROM fitness.templates t
               WHERE t.pubkey = i.member_pubkey AND t.d = i.member_d));

-- One row per address the fetcher re-checks upstream because it may be stale: the profiles
-- (kind 0) and relay lists (kind 10002) of authors with indexed fitness events, and the
-- exercises and templates that something references. next_check is when it is due again
-- (the kind's threshold after the last check, whatever its outcome, so nothing loops).
CREATE TABLE fitness.refresh_checks (
    address       text PRIMARY KEY,
    kind          integer NOT NULL,
    pubkey        text NOT NULL,
    d             text NOT NULL,
    checks        integer NOT NULL DEFAULT 1 CHECK (checks >= 1),
    last_check    timestamptz NOT NULL DEFAULT now(),
    next_check    timestamptz NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('updated', 'unchanged', 'absent', 'error')),
    reason        text,
    last_upstream text
);
CREATE INDEX refresh_checks_next_idx ON fitness.refresh_checks (next_check);

-- Everything freshness tracks, with when each is due for a re-check: the refresh check's
-- next_check, else when the stored version arrived plus the kind's threshold, else now (not
-- stored at all). $1 the author kinds refreshed (of 0, 3, 10002), $2/$3 the thresholds in
-- seconds per kind (parallel arrays; a kind not listed takes the threshold of kind -1). The
-- body is plain text, so the function does not pin the tables it reads.
CREATE FUNCTION fitness.refresh_candidates(author_kinds integer[], kinds integer[],
                                           seconds float8[])
RETURNS TABLE (kind integer, pubkey text, d text, address text, due timestamptz)
LANGUAGE sql STABLE AS $$
    WITH authors AS (
        SELECT w.pubkey FROM fitness.workouts w
        UNION SELECT t.pubkey FROM fitness.templates t
        UNION SELECT x.pubkey FROM fitness.exercises x
        UNION SELECT l.pubkey FROM fitness.lists l
    ),
    wanted AS (
        SELECT k.kind, a.pubkey, '' AS d
        FROM authors a CROSS JOIN unnest(author_kinds) AS k (kind)
        UNION ALL
        SELECT 33401, x.pubkey, x.d FROM fitness.exercises x
        WHERE EXISTS (SELECT 1 FROM fitness.template_sets s
                      WHERE s.exercise_pubkey = x.pubkey AND s.exercise_d = x.d)
           OR EXISTS (SELECT 1 FROM fitness.workout_sets s
                      WHERE s.exercise_pubkey = x.pubkey AND s.exercise_d = x.d)
           OR EXISTS (SELECT 1 FROM fitness.list_items i
                      WHERE i.member_kind = 33401 AND i.member_pubkey = x.pubkey
                        AND i.member_d = x.d)
        UNION ALL
        SELECT 33402, t.pubkey, t.d FROM fitness.templates t
        WHERE EXISTS (SELECT 1 FROM fitness.workouts w
                      WHERE w.template_pubkey = t.pubkey AND w.template_d = t.d)
           OR EXISTS (SELECT 1 FROM fitness.list_items i
                      WHERE i.member_kind = 33402 AND i.member_pubkey = t.pubkey
                        AND i.member_d = t.d)
    ),
    threshold AS (
        SELECT * FROM unnest(kinds, seconds) AS th (kind, seconds)
    )
    SELECT w.kind, w.pubkey, w.d, w.kind || ':' || w.pubkey || ':' || w.d,
           coalesce(r.next_check,
                    (SELECT e.received_at FROM events e
                     WHERE e.pubkey = decode(w.pubkey, 'hex') AND e.kind = w.kind
                       AND e.d_tag = w.d)
                    + make_interval(secs => coalesce(
                        (SELECT th.seconds FROM threshold th WHERE th.kind = w.kind),
                        (SELECT th.seconds FROM threshold th WHERE th.kind = -1))),
                    now())
    FROM wanted w
    LEFT JOIN fitness.refresh_checks r ON r.address = w.kind || ':' || w.pubkey || ':' || w.d
    WHERE w.pubkey ~ '^[0-9a-f]{64}$'
$$;
