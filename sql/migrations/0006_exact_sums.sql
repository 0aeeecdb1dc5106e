-- Research views whose sums do not depend on row order.
--
-- A double precision sum() adds rows in whatever order the plan reads them (heap order,
-- hash or parallel aggregation), and floating-point addition is not associative: two
-- databases holding the same events, loaded in different orders, could differ in the last
-- digit. Every sum over a double precision column is therefore taken in numeric, where
-- addition is exact, and cast back to double precision once: the result is the same on
-- any database and any plan. Each value enters the sum as its numeric conversion (15
-- significant digits, which reads back every decimal a client writes as written). Column
-- names and types are unchanged. count(), min() and max() were order-independent already.

CREATE OR REPLACE VIEW fitness.weekly_volume_by_exercise AS
    SELECT pubkey,
           week,
           exercise_pubkey,
           exercise_d,
           min(exercise_ref) AS exercise_ref,
           max(title) AS title,
           count(DISTINCT workout_event_id) AS workouts,
           count(*) AS sets,
           sum(reps::numeric)::double precision AS reps,
           sum(set_volume_kg::numeric)::double precision AS volume_kg
    FROM fitness.strength_sets
    WHERE NOT is_warmup
    GROUP BY pubkey, week, exercise_pubkey, exercise_d,
             CASE WHEN exercise_pubkey IS NULL OR exercise_d IS NULL THEN exercise_ref END;

CREATE OR REPLACE VIEW fitness.weekly_volume_by_muscle AS
    SELECT s.pubkey,
           s.week,
           h.tag AS hashtag,
           count(DISTINCT s.exercise_pubkey || ':' || s.exercise_d) AS exercises,
           count(DISTINCT s.workout_event_id) AS workouts,
           count(*) AS sets,
           sum(s.reps::numeric)::double precision AS reps,
           sum(s.set_volume_kg::numeric)::double precision AS volume_kg
    FROM fitness.strength_sets s
    JOIN (SELECT DISTINCT pubkey, d, tag FROM fitness.exercise_hashtags) h
        ON h.pubkey = s.exercise_pubkey AND h.d = s.exercise_d
    WHERE NOT s.is_warmup AND s.exercise_event_id IS NOT NULL
    GROUP BY s.pubkey, s.week, h.tag;

CREATE OR REPLACE VIEW fitness.cardio_totals AS
    SELECT pubkey,
           activity,
           count(*) AS workouts,
           count(distance_m) AS workouts_with_distance,
           sum(distance_m::numeric)::double precision AS total_distance_m,
           sum(duration_s::numeric)::double precision AS total_duration_s,
           sum(calories::numeric)::double precision AS total_calories,
           sum(elevation_gain_m::numeric)::double precision AS total_elevation_gain_m,
           sum(steps::numeric)::double precision AS total_steps,
           min(coalesce(started_at, created_at)) AS first_at,
           max(coalesce(started_at, created_at)) AS last_at
    FROM fitness.workouts
    WHERE dialect = 'runstr' OR distance_m IS NOT NULL
    GROUP BY pubkey, activity;
