-- Canonical exercises across authors, and progression views built on them.
--
-- Every author publishes their own exercise definitions: "Barbell Bench Press", "bench press"
-- and "Bench Press (Barbell)" are three addresses for one lift. A canonical vocabulary, kept
-- as data, groups them: an exercise's title is normalised (lowercased, apostrophes dropped,
-- every other run of characters outside a-z0-9 read as a space), its equipment words are
-- pulled out of it (fitness.equipment_words), and what is left, the movement title, is looked
-- up in fitness.exercise_aliases. An operator's row in fitness.canonical_overrides wins over
-- that match. Like the muscle map (0007) these tables are the operator's: `fitrelay reindex`
-- leaves them alone, and every view here reads them at query time, so an edit takes effect
-- at once, without reindexing.
--
-- The progression views follow the conventions of 0004 and 0006: weeks are ISO weeks (the
-- Monday) of coalesce(started_at, created_at) in UTC, warmup sets never count, a set's volume
-- is weight_kg * reps for weight and reps >= 0, and sums are taken in numeric.

-- A canonical exercise: a lift or a cardio activity, whatever the equipment.
CREATE TABLE fitness.canonical_exercises (
    id        text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_]*$'),
    name      text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]+( [a-z0-9]+)*$'),
    movement  text NOT NULL CHECK (movement IN (
        'horizontal_push', 'vertical_push', 'horizontal_pull', 'vertical_pull', 'squat',
        'hinge', 'lunge', 'carry', 'isolation', 'core', 'cardio', 'olympic')),
    equipment text CHECK (equipment ~ '^[a-z][a-z_]*$')
);

-- Words of a title that name equipment rather than the movement, and the equipment each
-- stands for ('db' -> dumbbell). They are removed from the title before the alias lookup.
CREATE TABLE fitness.equipment_words (
    word      text PRIMARY KEY CHECK (word ~ '^[a-z0-9]+$'),
    equipment text NOT NULL CHECK (equipment ~ '^[a-z][a-z_]*$')
);

-- A movement title (normalised, equipment words removed) and the canonical exercise it is.
-- Plurals and synonyms are rows here, not code.
CREATE TABLE fitness.exercise_aliases (
    pattern      text PRIMARY KEY CHECK (pattern ~ '^[a-z0-9]+( [a-z0-9]+)*$'),
    canonical_id text NOT NULL
                 REFERENCES fitness.canonical_exercises (id) ON UPDATE CASCADE ON DELETE CASCADE
);

-- An operator's decision for one exercise address, winning over the alias match:
-- canonical_id NULL says "no canonical exercise", equipment NULL keeps the automatic one.
-- No foreign key to fitness.exercises: a correction may precede the exercise, and outlives
-- a rebuild.
CREATE TABLE fitness.canonical_overrides (
    pubkey       text NOT NULL,
    d            text NOT NULL,
    canonical_id text
                 REFERENCES fitness.canonical_exercises (id) ON UPDATE CASCADE ON DELETE CASCADE,
    equipment    text CHECK (equipment ~ '^[a-z][a-z_]*$'),
    note         text NOT NULL DEFAULT '',
    PRIMARY KEY (pubkey, d)
);

INSERT INTO fitness.canonical_exercises (id, name, movement, equipment) VALUES
    ('bench_press', 'bench press', 'horizontal_push', NULL),
    ('incline_bench_press', 'incline bench press', 'horizontal_push', NULL),
    ('decline_bench_press', 'decline bench press', 'horizontal_push', NULL),
    ('chest_press', 'chest press', 'horizontal_push', NULL),
    ('push_up', 'push up', 'horizontal_push', 'bodyweight'),
    ('dip', 'dip', 'vertical_push', 'bodyweight'),
    ('chest_fly', 'chest fly', 'isolation', NULL),
    ('overhead_press', 'overhead press', 'vertical_push', NULL),
    ('lateral_raise', 'lateral raise', 'isolation', NULL),
    ('row', 'row', 'horizontal_pull', NULL),
    ('pull_up', 'pull up', 'vertical_pull', 'bodyweight'),
    ('chin_up', 'chin up', 'vertical_pull', 'bodyweight'),
    ('lat_pulldown', 'lat pulldown', 'vertical_pull', NULL),
    ('face_pull', 'face pull', 'horizontal_pull', NULL),
    ('shrug', 'shrug', 'isolation', NULL),
    ('biceps_curl', 'biceps curl', 'isolation', NULL),
    ('hammer_curl', 'hammer curl', 'isolation', NULL),
    ('triceps_extension', 'triceps extension', 'isolation', NULL),
    ('triceps_pushdown', 'triceps pushdown', 'isolation', 'cable'),
    ('squat', 'squat', 'squat', NULL),
    ('front_squat', 'front squat', 'squat', NULL),
    ('goblet_squat', 'goblet squat', 'squat', NULL),
    ('leg_press', 'leg press', 'squat', 'machine'),
    ('lunge', 'lunge', 'lunge', NULL),
    ('split_squat', 'split squat', 'lunge', NULL),
    ('leg_extension', 'leg extension', 'isolation', 'machine'),
    ('leg_curl', 'leg curl', 'isolation', 'machine'),
    ('deadlift', 'deadlift', 'hinge', NULL),
    ('romanian_deadlift', 'romanian deadlift', 'hinge', NULL),
    ('hip_thrust', 'hip thrust', 'hinge', NULL),
    ('good_morning', 'good morning', 'hinge', NULL),
    ('kettlebell_swing', 'kettlebell swing', 'hinge', 'kettlebell'),
    ('calf_raise', 'calf raise', 'isolation', NULL),
    ('farmers_carry', 'farmers carry', 'carry', NULL),
    ('power_clean', 'power clean', 'olympic', NULL),
    ('snatch', 'snatch', 'olympic', NULL),
    ('clean_and_jerk', 'clean and jerk', 'olympic', NULL),
    ('plank', 'plank', 'core', 'bodyweight'),
    ('crunch', 'crunch', 'core', NULL),
    ('sit_up', 'sit up', 'core', 'bodyweight'),
    ('leg_raise', 'leg raise', 'core', NULL),
    ('running', 'running', 'cardio', NULL),
    ('walking', 'walking', 'cardio', NULL),
    ('cycling', 'cycling', 'cardio', NULL),
    ('rowing', 'rowing', 'cardio', NULL),
    ('swimming', 'swimming', 'cardio', NULL),
    ('jump_rope', 'jump rope', 'cardio', NULL),
    ('burpee', 'burpee', 'cardio', 'bodyweight');

INSERT INTO fitness.equipment_words (word, equipment) VALUES
    ('barbell', 'barbell'), ('barbells', 'barbell'), ('bb', 'barbell'),
    ('dumbbell', 'dumbbell'), ('dumbbells', 'dumbbell'), ('db', 'dumbbell'),
    ('dbs', 'dumbbell'),
    ('cable', 'cable'), ('cables', 'cable'),
    ('machine', 'machine'),
    ('smith', 'smith_machine'),
    ('kettlebell', 'kettlebell'), ('kettlebells', 'kettlebell'), ('kb', 'kettlebell'),
    ('bodyweight', 'bodyweight'), ('bw', 'bodyweight');

-- Every canonical name is an alias of itself.
INSERT INTO fitness.exercise_aliases (pattern, canonical_id)
SELECT name, id FROM fitness.canonical_exercises;

INSERT INTO fitness.exercise_aliases (pattern, canonical_id) VALUES
    ('bench', 'bench_press'), ('flat bench press', 'bench_press'),
    ('flat bench', 'bench_press'), ('bench presses', 'bench_press'),
    ('incline bench', 'incline_bench_press'), ('incline press', 'incline_bench_press'),
    ('decline bench', 'decline_bench_press'),
    ('seated chest press', 'chest_press'),
    ('push ups', 'push_up'), ('pushup', 'push_up'), ('pushups', 'push_up'),
    ('press up', 'push_up'), ('press ups', 'push_up'),
    ('dips', 'dip'), ('chest dip', 'dip'), ('triceps dip', 'dip'), ('tricep dip', 'dip'),
    ('fly', 'chest_fly'), ('flye', 'chest_fly'), ('flyes', 'chest_fly'), ('flies', 'chest_fly'),
    ('chest flye', 'chest_fly'), ('pec fly', 'chest_fly'), ('crossover', 'chest_fly'),
    ('press', 'overhead_press'), ('ohp', 'overhead_press'),
    ('shoulder press', 'overhead_press'), ('military press', 'overhead_press'),
    ('standing press', 'overhead_press'), ('seated shoulder press', 'overhead_press'),
    ('lateral raises', 'lateral_raise'), ('side raise', 'lateral_raise'),
    ('side lateral raise', 'lateral_raise'),
    ('rows', 'row'), ('bent over row', 'row'), ('bent over rows', 'row'),
    ('seated row', 'row'), ('one arm row', 'row'), ('pendlay row', 'row'),
    ('pull ups', 'pull_up'), ('pullup', 'pull_up'), ('pullups', 'pull_up'),
    ('chin ups', 'chin_up'), ('chinup', 'chin_up'), ('chinups', 'chin_up'),
    ('pulldown', 'lat_pulldown'), ('lat pull down', 'lat_pulldown'),
    ('face pulls', 'face_pull'),
    ('shrugs', 'shrug'),
    ('curl', 'biceps_curl'), ('curls', 'biceps_curl'), ('bicep curl', 'biceps_curl'),
    ('bicep curls', 'biceps_curl'), ('biceps curls', 'biceps_curl'),
    ('hammer curls', 'hammer_curl'),
    ('tricep extension', 'triceps_extension'), ('skull crusher', 'triceps_extension'),
    ('skull crushers', 'triceps_extension'),
    ('overhead triceps extension', 'triceps_extension'),
    ('pushdown', 'triceps_pushdown'), ('tricep pushdown', 'triceps_pushdown'),
    ('squats', 'squat'), ('back squat', 'squat'), ('back squats', 'squat'),
    ('front squats', 'front_squat'), ('goblet squats', 'goblet_squat'),
    ('lunges', 'lunge'), ('walking lunge', 'lunge'), ('walking lunges', 'lunge'),
    ('bulgarian split squat', 'split_squat'),
    ('leg extensions', 'leg_extension'), ('leg curls', 'leg_curl'),
    ('seated leg curl', 'leg_curl'), ('lying leg curl', 'leg_curl'),
    ('deadlifts', 'deadlift'), ('conventional deadlift', 'deadlift'),
    ('rdl', 'romanian_deadlift'), ('stiff leg deadlift', 'romanian_deadlift'),
    ('hip thrusts', 'hip_thrust'),
    ('swing', 'kettlebell_swing'), ('swings', 'kettlebell_swing'),
    ('calf raises', 'calf_raise'), ('standing calf raise', 'calf_raise'),
    ('farmers walk', 'farmers_carry'), ('farmer walk', 'farmers_carry'),
    ('farmer carry', 'farmers_carry'),
    ('clean', 'power_clean'),
    ('crunches', 'crunch'), ('situp', 'sit_up'), ('situps', 'sit_up'), ('sit ups', 'sit_up'),
    ('leg raises', 'leg_raise'), ('hanging leg raise', 'leg_raise'),
    ('run', 'running'), ('jog', 'running'), ('jogging', 'running'), ('treadmill', 'running'),
    ('treadmill run', 'running'),
    ('walk', 'walking'), ('hike', 'walking'), ('hiking', 'walking'),
    ('bike', 'cycling'), ('ride', 'cycling'), ('spin', 'cycling'),
    ('stationary bike', 'cycling'),
    ('rower', 'rowing'), ('erg', 'rowing'), ('indoor rowing', 'rowing'),
    ('swim', 'swimming'),
    ('skipping', 'jump_rope'), ('skipping rope', 'jump_rope'),
    ('burpees', 'burpee');

-- Per indexed exercise: its normalised title, the movement title left after equipment words
-- are removed, the equipment, and the canonical exercise with how it was found
-- ('override' or 'alias'; NULL when nothing matched).
CREATE VIEW fitness.exercise_canonical AS
    WITH words AS (
        SELECT e.pubkey, e.d, w.word, w.n, q.equipment AS word_equipment
        FROM fitness.exercises e
        CROSS JOIN LATERAL regexp_split_to_table(
            btrim(regexp_replace(
                regexp_replace(lower(coalesce(e.title, '')), '[''’`]', '', 'g'),
                '[^a-z0-9]+', ' ', 'g')),
            ' ') WITH ORDINALITY AS w(word, n)
        LEFT JOIN fitness.equipment_words q ON q.word = w.word
        WHERE w.word <> ''
    ), parsed AS (
        SELECT pubkey,
               d,
               string_agg(word, ' ' ORDER BY n) AS normalised_title,
               string_agg(word, ' ' ORDER BY n) FILTER (WHERE word_equipment IS NULL)
                   AS movement_title,
               (array_agg(word_equipment ORDER BY n)
                   FILTER (WHERE word_equipment IS NOT NULL))[1] AS title_equipment
        FROM words
        GROUP BY pubkey, d
    ), matched AS (
        SELECT e.pubkey,
               e.d,
               e.event_id,
               e.title,
               e.equipment AS equipment_tag,
               coalesce(p.normalised_title, '') AS normalised_title,
               coalesce(p.movement_title, '') AS movement_title,
               p.title_equipment,
               CASE WHEN btrim(coalesce(e.equipment, '')) IN ('', 'other') THEN NULL
                    ELSE coalesce(q.equipment, btrim(e.equipment)) END AS tag_equipment,
               o.pubkey IS NOT NULL AS overridden,
               o.canonical_id AS override_id,
               o.equipment AS override_equipment,
               a.canonical_id AS alias_id
        FROM fitness.exercises e
        LEFT JOIN parsed p ON p.pubkey = e.pubkey AND p.d = e.d
        LEFT JOIN fitness.equipment_words q ON q.word = btrim(e.equipment)
        LEFT JOIN fitness.exercise_aliases a ON a.pattern = p.movement_title
        LEFT JOIN fitness.canonical_overrides o ON o.pubkey = e.pubkey AND o.d = e.d
    )
    SELECT m.pubkey,
           m.d,
           m.event_id,
           m.title,
           m.equipment_tag,
           m.normalised_title,
           m.movement_title,
           m.title_equipment,
           c.id AS canonical_id,
           c.name AS canonical_name,
           c.movement,
           coalesce(m.override_equipment, m.title_equipment, m.tag_equipment, c.equipment)
               AS equipment,
           CASE WHEN m.overridden THEN 'override'
                WHEN m.alias_id IS NOT NULL THEN 'alias' END AS matched_by
    FROM matched m
    LEFT JOIN fitness.canonical_exercises c
        ON c.id = CASE WHEN m.overridden THEN m.override_id ELSE m.alias_id END;

-- Indexed exercises with no canonical exercise and no operator decision, most performed
-- first in practice (order by performed_sets): the aliases or overrides to add next.
CREATE VIEW fitness.unmatched_exercises AS
    SELECT c.pubkey,
           c.d,
           c.event_id,
           c.title,
           c.normalised_title,
           c.movement_title,
           c.equipment,
           (SELECT count(*) FROM fitness.workout_sets s
            WHERE s.exercise_pubkey = c.pubkey AND s.exercise_d = c.d) AS performed_sets,
           (SELECT count(DISTINCT w.pubkey) FROM fitness.workout_sets s
            JOIN fitness.workouts w ON w.event_id = s.workout_event_id
            WHERE s.exercise_pubkey = c.pubkey AND s.exercise_d = c.d) AS athletes
    FROM fitness.exercise_canonical c
    WHERE c.canonical_id IS NULL
      AND NOT EXISTS (
          SELECT FROM fitness.canonical_overrides o WHERE o.pubkey = c.pubkey AND o.d = c.d
      );

-- Every performed set (warmups included, is_warmup) with its canonical exercise and
-- equipment, and both one-rep-max estimates. Sets of an exercise that is not indexed have
-- no canonical exercise.
CREATE VIEW fitness.canonical_sets AS
    SELECT s.workout_event_id,
           s.position,
           s.pubkey,
           s.performed_at,
           s.week,
           s.exercise_pubkey,
           s.exercise_d,
           s.exercise_ref,
           s.exercise_event_id,
           s.title,
           c.canonical_id,
           c.canonical_name,
           c.movement,
           c.equipment,
           s.set_number,
           s.set_type,
           s.is_warmup,
           s.weight_kg,
           s.reps,
           s.rpe,
           s.duration_s,
           s.distance_m,
           s.set_volume_kg,
           CASE WHEN s.weight_kg > 0 AND s.reps >= 1 THEN s.weight_kg * (1 + s.reps / 30) END
               AS e1rm_epley_kg,
           CASE WHEN s.weight_kg > 0 AND s.reps >= 1 AND s.reps < 37
                THEN s.weight_kg * 36 / (37 - s.reps) END AS e1rm_brzycki_kg,
           coalesce(s.weight_kg > 0 AND s.reps >= 1 AND s.reps <= 12, false) AS e1rm_trusted
    FROM fitness.strength_sets s
    LEFT JOIN fitness.exercise_canonical c
        ON s.exercise_event_id IS NOT NULL
       AND c.pubkey = s.exercise_pubkey AND c.d = s.exercise_d;

-- Per athlete, canonical exercise, equipment and UTC week: working sets (warmups excluded),
-- volume, the best e1RM of the week over sets of 1 to 12 reps, the best set (heaviest
-- weight, ties: more reps, then the earliest set), the running all-time best e1RM, and the
-- volume change from the athlete's previous week of this exercise (NULL for the first).
CREATE VIEW fitness.weekly_progression AS
    WITH ranked AS (
        SELECT s.*,
               s.weight_kg IS NOT NULL AND (s.reps IS NULL OR s.reps > 0) AS best_eligible,
               row_number() OVER (
                   PARTITION BY s.pubkey, s.canonical_id, s.equipment, s.week
                   ORDER BY s.weight_kg IS NOT NULL AND (s.reps IS NULL OR s.reps > 0) DESC,
                       s.weight_kg DESC, s.reps DESC NULLS LAST, s.performed_at,
                       s.workout_event_id, s.position
               ) AS best_rank
        FROM fitness.canonical_sets s
        WHERE NOT s.is_warmup AND s.canonical_id IS NOT NULL
    ), weekly AS (
        SELECT pubkey,
               canonical_id,
               equipment,
               week,
               max(canonical_name) AS canonical_name,
               max(movement) AS movement,
               count(DISTINCT workout_event_id) AS sessions,
               count(*) AS sets,
               sum(reps::numeric) AS reps,
               sum(set_volume_kg::numeric) AS volume,
               max(e1rm_epley_kg) FILTER (WHERE e1rm_trusted) AS best_e1rm_epley_kg,
               max(e1rm_brzycki_kg) FILTER (WHERE e1rm_trusted) AS best_e1rm_brzycki_kg,
               max(weight_kg) FILTER (WHERE best_rank = 1 AND best_eligible) AS best_weight_kg,
               max(reps) FILTER (WHERE best_rank = 1 AND best_eligible) AS best_reps,
               max(workout_event_id) FILTER (WHERE best_rank = 1 AND best_eligible)
                   AS best_workout_event_id
        FROM ranked
        GROUP BY pubkey, canonical_id, equipment, week
    )
    SELECT pubkey,
           canonical_id,
           canonical_name,
           movement,
           equipment,
           week,
           sessions,
           sets,
           reps::double precision AS reps,
           volume::double precision AS volume_kg,
           best_e1rm_epley_kg,
           best_e1rm_brzycki_kg,
           best_weight_kg,
           best_reps,
           best_workout_event_id,
           max(best_e1rm_epley_kg) OVER athlete AS alltime_best_e1rm_epley_kg,
           max(best_e1rm_brzycki_kg) OVER athlete AS alltime_best_e1rm_brzycki_kg,
           lag(week) OVER athlete AS previous_week,
           (volume - lag(volume) OVER athlete)::double precision AS volume_change_kg,
           CASE WHEN lag(volume) OVER athlete > 0
                THEN (100 * (volume - lag(volume) OVER athlete) / lag(volume) OVER athlete)
                    ::double precision
           END AS volume_change_pct
    FROM weekly
    WINDOW athlete AS (PARTITION BY pubkey, canonical_id, equipment ORDER BY week);

-- Per athlete and UTC week with at least one record: how often they trained.
CREATE VIEW fitness.weekly_training_frequency AS
    SELECT w.pubkey,
           (date_trunc('week', coalesce(w.started_at, w.created_at) AT TIME ZONE 'UTC'))::date
               AS week,
           count(*) AS sessions,
           count(*) FILTER (WHERE EXISTS (
               SELECT FROM fitness.workout_sets s
               WHERE s.workout_event_id = w.event_id
                 AND s.set_type IS DISTINCT FROM 'warmup'
           )) AS strength_sessions,
           count(DISTINCT (coalesce(w.started_at, w.created_at) AT TIME ZONE 'UTC')::date)
               AS training_days
    FROM fitness.workouts w
    GROUP BY 1, 2;
