-- Named queries of the fitness indexer (tables in schema fitness, see 0003_fitness.sql).
-- Hex ids and pubkeys throughout; created_at parameters are unix seconds.

-- name: lock_indexer
-- The first statement of every indexer batch and of a reindex (before the snapshot is
-- taken, so the transaction sees what the previous holder committed): one writer of the
-- fitness tables at a time. A role that may only read indexer_state can neither take it
-- nor block it (EXCLUSIVE conflicts with every mode but ACCESS SHARE).
LOCK TABLE fitness.indexer_state IN EXCLUSIVE MODE;

-- name: try_lock_indexer
LOCK TABLE fitness.indexer_state IN EXCLUSIVE MODE NOWAIT;

-- name: indexer_holders
-- Who holds the indexer's lock now (to say what a reindex waits for).
SELECT a.pid, a.application_name, a.state FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = 'fitness.indexer_state'::regclass
  AND l.mode = 'ExclusiveLock' AND l.granted AND l.database = (
      SELECT oid FROM pg_database WHERE datname = current_database());

-- name: log_head
-- The newest committed position of the log (insertions and removals).
SELECT greatest(
    (SELECT coalesce(max(seq), 0) FROM events),
    (SELECT coalesce(max(seq), 0) FROM removed_events)
);

-- name: checkpoint
SELECT last_seq FROM fitness.indexer_state WHERE name = $1;

-- name: save_checkpoint
INSERT INTO fitness.indexer_state (name, last_seq, updated_at) VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq, updated_at = now();

-- name: log_entries
-- Insertions and removals of the given kinds in (after, head], in log order. raw is NULL
-- for a removal. Each side is limited on its own, so each walks its seq index and stops
-- after $4 rows (a limit only outside would sort everything after the checkpoint, every
-- batch: quadratic over a cold catch-up).
SELECT seq, id, kind, raw FROM (
    (SELECT seq, id, kind, raw FROM events
     WHERE seq > $1 AND seq <= $2 AND kind = ANY($3::integer[])
     ORDER BY seq LIMIT $4)
    UNION ALL
    (SELECT seq, id, kind, NULL FROM removed_events
     WHERE seq > $1 AND seq <= $2 AND kind = ANY($3::integer[])
     ORDER BY seq LIMIT $4)
) log
ORDER BY seq
LIMIT $4;

-- name: prune_removals
-- Removals the indexer has applied are not needed again, once a minute old: the relay
-- processes' log tails read them too (their in-memory mirrors and query caches must learn
-- of every removal), and they are never that far behind while they are settled.
DELETE FROM removed_events WHERE seq <= $1 AND removed_at < now() - interval '1 minute';

-- name: count_events
-- How many stored events of the given kinds a reindex reads.
SELECT count(*) FROM events WHERE kind = ANY($1::integer[]);

-- name: oldest_unindexed
-- When the oldest event the indexer has not read yet was received (NULL: caught up).
SELECT received_at FROM events WHERE seq > $1 ORDER BY seq LIMIT 1;

-- name: clear_tables
-- DELETE, not TRUNCATE: readers keep reading the old rows until the rebuild commits
-- (TRUNCATE would make them wait for it, and wait itself for every open reader).
DELETE FROM fitness.exercise_hashtags;
DELETE FROM fitness.exercise_media;
DELETE FROM fitness.template_sets;
DELETE FROM fitness.workout_sets;
DELETE FROM fitness.workout_splits;
DELETE FROM fitness.workout_prs;
DELETE FROM fitness.list_items;
DELETE FROM fitness.exercises;
DELETE FROM fitness.templates;
DELETE FROM fitness.workouts;
DELETE FROM fitness.non_workouts;
DELETE FROM fitness.lists;
DELETE FROM fitness.index_errors;

-- name: count_unresolved
SELECT count(*) FROM fitness.unresolved_references;

-- name: oldest_unresolved
-- When the oldest event still waiting for a resolvable dependency arrived (NULL: none).
-- Malformed references never resolve, so they are not waited for.
SELECT min(e.received_at) FROM events e
WHERE e.id IN (
    SELECT decode(s.workout_event_id, 'hex') FROM fitness.workout_sets s
    WHERE s.exercise_event_id IS NULL AND s.exercise_pubkey IS NOT NULL
    UNION
    SELECT decode(t.event_id, 'hex') FROM fitness.template_sets s
    JOIN fitness.templates t ON t.pubkey = s.template_pubkey AND t.d = s.template_d
    WHERE s.exercise_event_id IS NULL AND s.exercise_pubkey IS NOT NULL
    UNION
    SELECT decode(w.event_id, 'hex') FROM fitness.workouts w
    WHERE w.template_event_id IS NULL AND w.template_pubkey IS NOT NULL
);

-- Removing what one event produced ------------------------------------------------------

-- name: remove_exercise
DELETE FROM fitness.exercises WHERE event_id = $1 RETURNING pubkey, d;

-- name: remove_exercise_address
DELETE FROM fitness.exercises WHERE pubkey = $1 AND d = $2 RETURNING event_id;

-- name: remove_template
DELETE FROM fitness.templates WHERE event_id = $1 RETURNING pubkey, d;

-- name: remove_template_address
DELETE FROM fitness.templates WHERE pubkey = $1 AND d = $2 RETURNING event_id;

-- name: remove_workout
-- The record and its children (no foreign key cascades to them, see 0012).
WITH sets AS (DELETE FROM fitness.workout_sets WHERE workout_event_id = $1),
     splits AS (DELETE FROM fitness.workout_splits WHERE workout_event_id = $1),
     prs AS (DELETE FROM fitness.workout_prs WHERE workout_event_id = $1)
DELETE FROM fitness.workouts WHERE event_id = $1;

-- name: remove_non_workout
DELETE FROM fitness.non_workouts WHERE event_id = $1;

-- name: remove_list
DELETE FROM fitness.lists WHERE event_id = $1;

-- name: remove_list_address
DELETE FROM fitness.lists WHERE kind = $1 AND pubkey = $2 AND d = $3 RETURNING event_id;

-- name: remove_errors
DELETE FROM fitness.index_errors WHERE event_id = $1;

-- Writing rows --------------------------------------------------------------------------

-- name: insert_exercise
INSERT INTO fitness.exercises (pubkey, d, event_id, created_at, title, equipment, difficulty,
    format, format_units, format_units_raw, instructions, exercise_type, category, hashtags)
VALUES ($1, $2, $3, to_timestamp($4), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14);

-- name: insert_exercise_hashtag
INSERT INTO fitness.exercise_hashtags (pubkey, d, tag, raw) VALUES ($1, $2, $3, $4);

-- name: insert_exercise_media
INSERT INTO fitness.exercise_media (pubkey, d, position, url, mime_type, width, height, alt, raw)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: insert_template
INSERT INTO fitness.templates (pubkey, d, event_id, created_at, title, template_type, rounds,
    duration_s, interval_s, rest_between_rounds_s, rest_between_sets_s, difficulty, notes,
    client, hashtags)
VALUES ($1, $2, $3, to_timestamp($4), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15);

-- name: insert_template_set
INSERT INTO fitness.template_sets (template_pubkey, template_d, position, tag_index,
    exercise_ref, exercise_pubkey, exercise_d, relay_hint, exercise_event_id, set_number,
    set_number_given, group_number, values_raw, weight_kg, weight_raw, weight_unit, reps, rpe,
    set_type, set_type_raw, duration_s, distance_m, heart_rate, mapped_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, $23, $24);

-- name: insert_workout
INSERT INTO fitness.workouts (event_id, kind, pubkey, d, created_at, dialect, title,
    workout_type, activity, activity_raw, started_at, ended_at, start_raw, end_raw, duration_s,
    duration_raw, completed, rounds_completed, interval_s, template_ref, template_pubkey,
    template_d, template_relay, template_event_id, notes, client, source, hashtags,
    distance_m, distance_raw, distance_unit, elevation_gain_m, elevation_loss_m, calories,
    steps, avg_heart_rate, max_heart_rate, avg_pace_s_per_km, avg_pace_raw, avg_pace_unit)
VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7, $8, $9, $10, to_timestamp($11),
    to_timestamp($12), $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26,
    $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40);

-- name: insert_workout_set
INSERT INTO fitness.workout_sets (workout_event_id, position, tag_index, exercise_ref,
    exercise_pubkey, exercise_d, relay_hint, exercise_event_id, set_number, set_number_given,
    values_raw, weight_kg, weight_raw, weight_unit, reps, rpe, set_type, set_type_raw,
    duration_s, distance_m, heart_rate, mapped_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22);

-- name: insert_workout_split
INSERT INTO fitness.workout_splits (workout_event_id, split_number, elapsed_s, pace_s,
    distance_raw)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workout_event_id, split_number) DO UPDATE
SET elapsed_s = coalesce(fitness.workout_splits.elapsed_s, excluded.elapsed_s),
    pace_s = coalesce(fitness.workout_splits.pace_s, excluded.pace_s),
    distance_raw = coalesce(fitness.workout_splits.distance_raw, excluded.distance_raw);

-- name: insert_workout_pr
INSERT INTO fitness.workout_prs (workout_event_id, position, exercise_ref, exercise_pubkey,
    exercise_d, metric, value, raw)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: insert_non_workout
INSERT INTO fitness.non_workouts (event_id, pubkey, created_at, reason)
VALUES ($1, $2, to_timestamp($3), $4);

-- name: insert_list
INSERT INTO fitness.lists (kind, pubkey, d, event_id, created_at, title, description)
VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7);

-- name: insert_list_item
INSERT INTO fitness.list_items (list_kind, list_pubkey, list_d, position, member_ref,
    member_kind, member_pubkey, member_d, relay_hint)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: insert_error
INSERT INTO fitness.index_errors (event_id, kind, tag_index, reason, detail)
VALUES ($1, $2, $3, $4, $5);

-- Resolving references ------------------------------------------------------------------

-- name: exercise_formats
-- The indexed exercises among the given addresses (parallel arrays), with their formats and
-- equipment (which decides what a blank weight means).
SELECT e.pubkey, e.d, e.event_id, e.format, e.format_units, e.equipment
FROM fitness.exercises e
JOIN unnest($1::text[], $2::text[]) AS a (pubkey, d) ON e.pubkey = a.pubkey AND e.d = a.d;

-- name: template_event
SELECT event_id FROM fitness.templates WHERE pubkey = $1 AND d = $2;

-- name: template_sets_of_exercise
SELECT template_pubkey, template_d, position, values_raw FROM fitness.template_sets
WHERE exercise_pubkey = $1 AND exercise_d = $2;

-- name: workout_sets_of_exercise
SELECT workout_event_id, position, values_raw FROM fitness.workout_sets
WHERE exercise_pubkey = $1 AND exercise_d = $2;

-- name: relink_template_set
UPDATE fitness.template_sets SET exercise_event_id = $4, weight_kg = $5, weight_raw = $6,
    weight_unit = $7, reps = $8, rpe = $9, set_type = $10, set_type_raw = $11,
    duration_s = $12, distance_m = $13, heart_rate = $14, mapped_by = $15
WHERE template_pubkey = $1 AND template_d = $2 AND position = $3;

-- name: relink_workout_set
UPDATE fitness.workout_sets SET exercise_event_id = $3, weight_kg = $4, weight_raw = $5,
    weight_unit = $6, reps = $7, rpe = $8, set_type = $9, set_type_raw = $10,
    duration_s = $11, distance_m = $12, heart_rate = $13, mapped_by = $14
WHERE workout_event_id = $1 AND position = $2;

-- name: relink_workouts
-- Point the records naming a template address at its current version (NULL: none).
UPDATE fitness.workouts SET template_event_id = $3
WHERE template_pubkey = $1 AND template_d = $2;

-- Applying a batch set-based (indexer/bulk.py) ---------------------------------------------
-- A batch's net effect: first every row it removes or replaces goes (by event id, or by an
-- address the batch writes), then the rows it leaves are copied in, then references to the
-- addresses it changed are re-pointed once.

-- name: bulk_remove_exercises
-- The exercises held by the removed ids ($1) or at the addresses written ($2, $3), with the
-- format each was read through (sets naming them were mapped with it).
DELETE FROM fitness.exercises e USING (
    SELECT pubkey, d FROM fitness.exercises WHERE event_id = ANY($1::text[])
    UNION
    SELECT * FROM unnest($2::text[], $3::text[])
) a (pubkey, d)
WHERE e.pubkey = a.pubkey AND e.d = a.d
RETURNING e.event_id, e.pubkey, e.d, e.format, e.format_units, e.equipment;

-- name: bulk_remove_templates
DELETE FROM fitness.templates t USING (
    SELECT pubkey, d FROM fitness.templates WHERE event_id = ANY($1::text[])
    UNION
    SELECT * FROM unnest($2::text[], $3::text[])
) a (pubkey, d)
WHERE t.pubkey = a.pubkey AND t.d = a.d
RETURNING t.event_id, t.pubkey, t.d;

-- name: bulk_remove_lists
DELETE FROM fitness.lists l USING (
    SELECT kind, pubkey, d FROM fitness.lists WHERE event_id = ANY($1::text[])
    UNION
    SELECT * FROM unnest($2::integer[], $3::text[], $4::text[])
) a (kind, pubkey, d)
WHERE l.kind = a.kind AND l.pubkey = a.pubkey AND l.d = a.d
RETURNING l.event_id;

-- name: bulk_remove_workouts
WITH sets AS (DELETE FROM fitness.workout_sets WHERE workout_event_id = ANY($1::text[])),
     splits AS (DELETE FROM fitness.workout_splits WHERE workout_event_id = ANY($1::text[])),
     prs AS (DELETE FROM fitness.workout_prs WHERE workout_event_id = ANY($1::text[]))
DELETE FROM fitness.workouts WHERE event_id = ANY($1::text[]);

-- name: bulk_remove_non_workouts
DELETE FROM fitness.non_workouts WHERE event_id = ANY($1::text[]);

-- name: bulk_remove_errors
DELETE FROM fitness.index_errors WHERE event_id = ANY($1::text[]);

-- name: bulk_template_events
-- The indexed templates among the given addresses (parallel arrays).
SELECT t.pubkey, t.d, t.event_id FROM fitness.templates t
JOIN unnest($1::text[], $2::text[]) AS a (pubkey, d) ON t.pubkey = a.pubkey AND t.d = a.d;

-- name: bulk_relink_workouts
-- Point the records naming the given template addresses at the version indexed there now.
UPDATE fitness.workouts w SET template_event_id = t.event_id
FROM unnest($1::text[], $2::text[]) AS a (pubkey, d)
LEFT JOIN fitness.templates t ON t.pubkey = a.pubkey AND t.d = a.d
WHERE w.template_pubkey = a.pubkey AND w.template_d = a.d;

-- name: bulk_repoint_template_sets
-- Sets whose exercise got a new version read through the same format: only the id changes.
UPDATE fitness.template_sets s SET exercise_event_id = a.event_id
FROM unnest($1::text[], $2::text[], $3::text[]) AS a (pubkey, d, event_id)
WHERE s.exercise_pubkey = a.pubkey AND s.exercise_d = a.d;

-- name: bulk_repoint_workout_sets
UPDATE fitness.workout_sets s SET exercise_event_id = a.event_id
FROM unnest($1::text[], $2::text[], $3::text[]) AS a (pubkey, d, event_id)
WHERE s.exercise_pubkey = a.pubkey AND s.exercise_d = a.d;

-- name: bulk_template_sets_of_exercises
SELECT s.template_pubkey, s.template_d, s.position, s.exercise_pubkey, s.exercise_d,
    s.values_raw
FROM fitness.template_sets s
JOIN unnest($1::text[], $2::text[]) AS a (pubkey, d)
    ON s.exercise_pubkey = a.pubkey AND s.exercise_d = a.d;

-- name: bulk_workout_sets_of_exercises
SELECT s.workout_event_id, s.position, s.exercise_pubkey, s.exercise_d, s.values_raw
FROM fitness.workout_sets s
JOIN unnest($1::text[], $2::text[]) AS a (pubkey, d)
    ON s.exercise_pubkey = a.pubkey AND s.exercise_d = a.d;

-- name: bulk_relink_template_sets
-- Sets re-read through their exercise's new format (or the default order when it went).
UPDATE fitness.template_sets s SET exercise_event_id = u.event_id, weight_kg = u.weight_kg,
    weight_raw = u.weight_raw, weight_unit = u.weight_unit, reps = u.reps, rpe = u.rpe,
    set_type = u.set_type, set_type_raw = u.set_type_raw, duration_s = u.duration_s,
    distance_m = u.distance_m, heart_rate = u.heart_rate, mapped_by = u.mapped_by
FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::float8[], $6::text[],
    $7::text[], $8::float8[], $9::float8[], $10::text[], $11::text[], $12::float8[],
    $13::float8[], $14::float8[], $15::text[])
    AS u (template_pubkey, template_d, position, event_id, weight_kg, weight_raw,
        weight_unit, reps, rpe, set_type, set_type_raw, duration_s, distance_m, heart_rate,
        mapped_by)
WHERE s.template_pubkey = u.template_pubkey AND s.template_d = u.template_d
    AND s.position = u.position;

-- name: bulk_relink_workout_sets
UPDATE fitness.workout_sets s SET exercise_event_id = u.event_id, weight_kg = u.weight_kg,
    weight_raw = u.weight_raw, weight_unit = u.weight_unit, reps = u.reps, rpe = u.rpe,
    set_type = u.set_type, set_type_raw = u.set_type_raw, duration_s = u.duration_s,
    distance_m = u.distance_m, heart_rate = u.heart_rate, mapped_by = u.mapped_by
FROM unnest($1::text[], $2::integer[], $3::text[], $4::float8[], $5::text[], $6::text[],
    $7::float8[], $8::float8[], $9::text[], $10::text[], $11::float8[], $12::float8[],
    $13::float8[], $14::text[])
    AS u (workout_event_id, position, event_id, weight_kg, weight_raw, weight_unit, reps,
        rpe, set_type, set_type_raw, duration_s, distance_m, heart_rate, mapped_by)
WHERE s.workout_event_id = u.workout_event_id AND s.position = u.position;
