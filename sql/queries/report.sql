-- Named queries of `fitrelay report`. They read only views of schema fitness, so the
-- read-only role fitrelay_reader can run them. $1 is the athlete's pubkey (NULL for every
-- athlete); $2 and $3 are the Mondays of the first and last week shown.

-- name: weeks
-- The first and latest UTC weeks with a workout record (of the athlete).
SELECT min(week) AS first_week, max(week) AS last_week
FROM fitness.weekly_training_frequency
WHERE ($1::text IS NULL OR pubkey = $1);

-- name: athletes
-- Every athlete with a workout record, to resolve --athlete and to label the series.
SELECT DISTINCT pubkey FROM fitness.weekly_training_frequency ORDER BY pubkey;

-- name: headline
-- Athletes, workout records, working sets (warmups excluded) and the first and last
-- record's time within the weeks shown.
WITH shown AS (
    SELECT pubkey, week, sessions
    FROM fitness.weekly_training_frequency
    WHERE ($1::text IS NULL OR pubkey = $1) AND week BETWEEN $2 AND $3
), sets AS (
    SELECT count(*) AS working_sets, min(performed_at) AS first_set,
           max(performed_at) AS last_set
    FROM fitness.strength_sets
    WHERE ($1::text IS NULL OR pubkey = $1) AND week BETWEEN $2 AND $3 AND NOT is_warmup
)
SELECT (SELECT count(DISTINCT pubkey) FROM shown) AS athletes,
       (SELECT coalesce(sum(sessions), 0)::bigint FROM shown) AS workouts,
       (SELECT working_sets FROM sets) AS working_sets,
       (SELECT first_set FROM sets) AS first_set,
       (SELECT last_set FROM sets) AS last_set;

-- name: muscle_load
-- Weekly contribution-weighted volume per muscle group, summed over the athletes shown.
SELECT week, muscle,
       sum(weighted_volume_kg::numeric)::double precision AS volume_kg,
       sum(weighted_sets::numeric)::double precision AS weighted_sets
FROM fitness.weekly_load_by_muscle_group
WHERE ($1::text IS NULL OR pubkey = $1) AND week BETWEEN $2 AND $3
GROUP BY week, muscle
ORDER BY muscle, week;

-- name: main_lifts
-- The canonical lifts (with equipment) with the most working sets in the weeks shown that
-- have an e1RM: the $4 lifts charted.
SELECT canonical_id, canonical_name, equipment, sum(sets)::bigint AS sets
FROM fitness.weekly_progression
WHERE ($1::text IS NULL OR pubkey = $1) AND week BETWEEN $2 AND $3
  AND best_e1rm_epley_kg IS NOT NULL
GROUP BY canonical_id, canonical_name, equipment
ORDER BY sets DESC, canonical_id, equipment NULLS FIRST
LIMIT $4;

-- name: progression
-- One lift's weekly best e1RM (Epley, trusted sets) per athlete.
SELECT pubkey, week, best_e1rm_epley_kg
FROM fitness.weekly_progression
WHERE ($1::text IS NULL OR pubkey = $1) AND week BETWEEN $2 AND $3
  AND canonical_id = $4 AND equipment IS NOT DISTINCT FROM $5
  AND best_e1rm_epley_kg IS NOT NULL
ORDER BY pubkey, week;

-- name: frequency
-- Workout records per athlete and week.
SELECT pubkey, week, sessions, strength_sessions
FROM fitness.weekly_training_frequency
WHERE ($1::text IS NULL OR pubkey = $1) AND week BETWEEN $2 AND $3
ORDER BY pubkey, week;
