-- Research views over the fitness tables, the fetcher's queue of missing references, and the
-- read-only role fitrelay_reader for analysts.
--
-- Conventions of every view here:
-- - "week" is the Monday (ISO week start) of coalesce(started_at, created_at), in UTC, so
--   results do not depend on the session's TimeZone;
-- - warmup sets never count; a set whose set_type is NULL (absent or unknown) counts;
-- - a set's volume is weight_kg * reps when both are known and neither is negative
--   (a negative weight means assisted: it has no meaningful volume);
-- - an exercise is identified by (exercise_pubkey, exercise_d) when its coordinate parsed,
--   else by its raw reference, so malformed references are kept apart instead of merged.

-- The fetcher's queue: every distinct address that is referenced but not indexed and could
-- exist (kind, pubkey and d all parsed). Malformed references cannot be fetched and stay out.
CREATE VIEW fitness.missing_references AS
    SELECT kind,
           pubkey,
           d,
           kind || ':' || pubkey || ':' || d AS address,
           coalesce(
               array_agg(DISTINCT relay_hint ORDER BY relay_hint)
                   FILTER (WHERE relay_hint IS NOT NULL AND relay_hint <> ''),
               '{}'::text[]
           ) AS relay_hints,
           count(*) AS referenced_by,
           count(DISTINCT source || ' ' || source_key) AS referencing_objects
    FROM fitness.unresolved_references
    WHERE pubkey IS NOT NULL AND d IS NOT NULL
    GROUP BY kind, pubkey, d;

-- Templates with at least one prescribed set whose exercise is not indexed.
CREATE VIEW fitness.incomplete_templates AS
    SELECT t.pubkey,
           t.d,
           t.event_id,
           t.created_at,
           t.title,
           count(DISTINCT s.exercise_ref) FILTER (WHERE s.exercise_event_id IS NULL)
               AS missing_count,
           array_agg(DISTINCT s.exercise_ref ORDER BY s.exercise_ref)
               FILTER (WHERE s.exercise_event_id IS NULL) AS missing_addresses,
           count(*) FILTER (WHERE s.exercise_event_id IS NULL) AS missing_sets,
           count(*) AS total_sets
    FROM fitness.templates t
    JOIN fitness.template_sets s ON s.template_pubkey = t.pubkey AND s.template_d = t.d
    GROUP BY t.pubkey, t.d
    HAVING count(*) FILTER (WHERE s.exercise_event_id IS NULL) > 0;

-- Every performed set with its workout's author and time and the derived measures the
-- research views aggregate. Warmups are included here (is_warmup) and left out by the
-- aggregates.
CREATE VIEW fitness.strength_sets AS
    SELECT s.workout_event_id,
           s.position,
           w.pubkey,
           coalesce(w.started_at, w.created_at) AS performed_at,
           (date_trunc('week', coalesce(w.started_at, w.created_at) AT TIME ZONE 'UTC'))::date
               AS week,
           s.exercise_pubkey,
           s.exercise_d,
           s.exercise_ref,
           s.exercise_event_id,
           e.title,
           s.set_number,
           s.set_type,
           coalesce(s.set_type = 'warmup', false) AS is_warmup,
           s.weight_kg,
           s.reps,
           s.rpe,
           s.duration_s,
           s.distance_m,
           CASE WHEN s.weight_kg >= 0 AND s.reps >= 0 THEN s.weight_kg * s.reps END
               AS set_volume_kg,
           CASE WHEN s.weight_kg >= 0 AND s.reps >= 1 THEN s.weight_kg * (1 + s.reps / 30) END
               AS e1rm_epley_kg
    FROM fitness.workout_sets s
    JOIN fitness.workouts w ON w.event_id = s.workout_event_id
    LEFT JOIN fitness.exercises e
        ON s.exercise_event_id IS NOT NULL
       AND e.pubkey = s.exercise_pubkey AND e.d = s.exercise_d;

-- Per author, UTC week and exercise: working sets, reps and volume.
CREATE VIEW fitness.weekly_volume_by_exercise AS
    SELECT pubkey,
           week,
           exercise_pubkey,
           exercise_d,
           min(exercise_ref) AS exercise_ref,
           max(title) AS title,
           count(DISTINCT workout_event_id) AS workouts,
           count(*) AS sets,
           sum(reps) AS reps,
           sum(set_volume_kg) AS volume_kg
    FROM fitness.strength_sets
    WHERE NOT is_warmup
    GROUP BY pubkey, week, exercise_pubkey, exercise_d,
             CASE WHEN exercise_pubkey IS NULL OR exercise_d IS NULL THEN exercise_ref END;

-- Per author, UTC week and hashtag (muscle group, movement pattern ...) of the resolved
-- exercises. A set counts once under each distinct hashtag of its exercise, so rows of one
-- week overlap and must not be summed across hashtags.
CREATE VIEW fitness.weekly_volume_by_muscle AS
    SELECT s.pubkey,
           s.week,
           h.tag AS hashtag,
           count(DISTINCT s.exercise_pubkey || ':' || s.exercise_d) AS exercises,
           count(DISTINCT s.workout_event_id) AS workouts,
           count(*) AS sets,
           sum(s.reps) AS reps,
           sum(s.set_volume_kg) AS volume_kg
    FROM fitness.strength_sets s
    JOIN (SELECT DISTINCT pubkey, d, tag FROM fitness.exercise_hashtags) h
        ON h.pubkey = s.exercise_pubkey AND h.d = s.exercise_d
    WHERE NOT s.is_warmup AND s.exercise_event_id IS NOT NULL
    GROUP BY s.pubkey, s.week, h.tag;

-- Per author and exercise: bests over all working sets, and the set of the best estimated
-- one-rep max (Epley: weight * (1 + reps / 30), reps >= 1). Ties go to the earliest set.
CREATE VIEW fitness.personal_records AS
    WITH ranked AS (
        SELECT s.*,
               row_number() OVER (
                   PARTITION BY s.pubkey, s.exercise_pubkey, s.exercise_d,
                       CASE WHEN s.exercise_pubkey IS NULL OR s.exercise_d IS NULL
                            THEN s.exercise_ref END
                   ORDER BY s.e1rm_epley_kg DESC NULLS LAST, s.performed_at,
                       s.workout_event_id, s.position
               ) AS e1rm_rank
        FROM fitness.strength_sets s
        WHERE NOT s.is_warmup
    )
    SELECT pubkey,
           exercise_pubkey,
           exercise_d,
           min(exercise_ref) AS exercise_ref,
           max(title) AS title,
           count(DISTINCT workout_event_id) AS workouts,
           count(*) AS sets,
           max(weight_kg) FILTER (WHERE reps IS NULL OR reps > 0) AS max_weight_kg,
           max(reps) AS max_reps,
           max(set_volume_kg) AS max_set_volume_kg,
           max(e1rm_epley_kg) AS e1rm_epley_kg,
           max(weight_kg) FILTER (WHERE e1rm_rank = 1 AND e1rm_epley_kg IS NOT NULL)
               AS e1rm_weight_kg,
           max(reps) FILTER (WHERE e1rm_rank = 1 AND e1rm_epley_kg IS NOT NULL) AS e1rm_reps,
           max(workout_event_id) FILTER (WHERE e1rm_rank = 1 AND e1rm_epley_kg IS NOT NULL)
               AS e1rm_workout_event_id,
           max(performed_at) FILTER (WHERE e1rm_rank = 1 AND e1rm_epley_kg IS NOT NULL)
               AS e1rm_performed_at,
           min(performed_at) AS first_performed_at,
           max(performed_at) AS last_performed_at
    FROM ranked
    GROUP BY pubkey, exercise_pubkey, exercise_d,
             CASE WHEN exercise_pubkey IS NULL OR exercise_d IS NULL THEN exercise_ref END;

-- Per template address: how many workout records reference it, by how many authors, when.
-- Indexed templates appear with 0 uses; referenced templates that are not indexed appear with
-- indexed = false (malformed references are keyed by their raw text).
CREATE VIEW fitness.template_usage AS
    WITH uses AS (
        SELECT template_pubkey,
               template_d,
               CASE WHEN template_pubkey IS NULL OR template_d IS NULL THEN template_ref END
                   AS malformed_ref,
               min(template_ref) AS template_ref,
               count(*) AS records,
               count(DISTINCT pubkey) AS authors,
               min(coalesce(started_at, created_at)) AS first_used,
               max(coalesce(started_at, created_at)) AS last_used
        FROM fitness.workouts
        WHERE template_ref IS NOT NULL
        GROUP BY 1, 2, 3
    )
    SELECT coalesce(t.pubkey, u.template_pubkey) AS template_pubkey,
           coalesce(t.d, u.template_d) AS template_d,
           coalesce(u.template_ref, '33402:' || t.pubkey || ':' || t.d) AS template_ref,
           t.event_id AS template_event_id,
           t.title,
           t.event_id IS NOT NULL AS indexed,
           coalesce(u.records, 0) AS records,
           coalesce(u.authors, 0) AS authors,
           u.first_used,
           u.last_used
    FROM fitness.templates t
    FULL JOIN uses u ON u.template_pubkey = t.pubkey AND u.template_d = t.d;

-- Per author and activity: cardio summaries (every RUNSTR record, and any record with a
-- distance). Totals are NULL when no record of the group carries that measure.
CREATE VIEW fitness.cardio_totals AS
    SELECT pubkey,
           activity,
           count(*) AS workouts,
           count(distance_m) AS workouts_with_distance,
           sum(distance_m) AS total_distance_m,
           sum(duration_s) AS total_duration_s,
           sum(calories) AS total_calories,
           sum(elevation_gain_m) AS total_elevation_gain_m,
           sum(steps) AS total_steps,
           min(coalesce(started_at, created_at)) AS first_at,
           max(coalesce(started_at, created_at)) AS last_at
    FROM fitness.workouts
    WHERE dialect = 'runstr' OR distance_m IS NOT NULL
    GROUP BY pubkey, activity;

-- The read-only role for research. Roles are cluster-wide: it is created once (by whichever
-- database migrates first) and granted per database. A migrating user that may not manage
-- roles gets a NOTICE instead of an error. No password is set: the operator sets one.
DO $role$
DECLARE
    can_manage boolean;
    reader_oid oid;
    existing   text[];
    setting    text[];
    obj        regclass;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO can_manage FROM pg_roles WHERE rolname = current_user;

    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fitrelay_reader') THEN
        IF NOT can_manage THEN
            RAISE NOTICE 'fitrelay_reader: % may not create roles, the role is not set up',
                current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE fitrelay_reader
                LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by the migration of another database of this cluster
        END;
    END IF;
    SELECT oid INTO reader_oid FROM pg_roles WHERE rolname = 'fitrelay_reader';

    -- Role defaults (only those not set yet, so an operator's own values are kept).
    SELECT setconfig INTO existing FROM pg_db_role_setting
    WHERE setdatabase = 0 AND setrole = reader_oid;
    FOREACH setting SLICE 1 IN ARRAY ARRAY[
        ['default_transaction_read_only', 'on'],
        ['statement_timeout', '60s'],
        ['idle_in_transaction_session_timeout', '5min']
    ] LOOP
        CONTINUE WHEN EXISTS (
            SELECT FROM unnest(existing) AS c WHERE split_part(c, '=', 1) = setting[1]
        );
        IF NOT can_manage THEN
            RAISE NOTICE 'fitrelay_reader: % may not alter roles, % is not set',
                current_user, setting[1];
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('ALTER ROLE fitrelay_reader SET %I = %L', setting[1], setting[2]);
        EXCEPTION WHEN OTHERS THEN
            -- No ADMIN option on a role created by someone else, or a concurrent migration
            -- of another database setting the same value.
            RAISE NOTICE 'fitrelay_reader: % not set: %', setting[1], SQLERRM;
        END;
    END LOOP;

    -- CONNECT and USAGE on public are PUBLIC's by default anyway; granting them explicitly
    -- keeps the role working where an operator revoked them from PUBLIC.
    IF has_database_privilege(current_user, current_database(), 'CONNECT WITH GRANT OPTION') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO fitrelay_reader', current_database());
    ELSE
        RAISE NOTICE 'fitrelay_reader: % may not grant CONNECT on database %',
            current_user, current_database();
    END IF;
    IF has_schema_privilege(current_user, 'public', 'USAGE WITH GRANT OPTION') THEN
        GRANT USAGE ON SCHEMA public TO fitrelay_reader;
    ELSE
        RAISE NOTICE 'fitrelay_reader: % may not grant USAGE on schema public', current_user;
    END IF;
    GRANT USAGE ON SCHEMA fitness TO fitrelay_reader;

    -- SELECT on every table and view of both schemas this user may grant on (one by one, so
    -- a foreign object, e.g. an extension's table in public, cannot fail the migration).
    FOR obj IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace IN ('public'::regnamespace, 'fitness'::regnamespace)
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        ORDER BY c.oid
    LOOP
        IF has_table_privilege(current_user, obj, 'SELECT WITH GRANT OPTION') THEN
            EXECUTE format('GRANT SELECT ON %s TO fitrelay_reader', obj);
        ELSE
            RAISE NOTICE 'fitrelay_reader: % may not grant SELECT on %', current_user, obj;
        END IF;
    END LOOP;

    -- Tables and views that later migrations (run as this user) create are readable too.
    ALTER DEFAULT PRIVILEGES IN SCHEMA public, fitness GRANT SELECT ON TABLES TO fitrelay_reader;
END
$role$;
