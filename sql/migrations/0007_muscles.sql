-- A muscle vocabulary as data: canonical muscle groups, an operator-editable map from an
-- exercise's hashtags, title words and equipment to the muscles it trains, and views of
-- weekly training load per muscle built on it.
--
-- The map is data, not derived from events: `fitrelay reindex` leaves both tables alone,
-- and edits take effect at once (every view here is computed at query time). A match gives
-- a contribution: 1.0 for a primary mover, 0.5 for a secondary one (any value in (0, 1]
-- is allowed). An exercise matched to one muscle several ways takes the largest.

CREATE TABLE fitness.muscle_groups (
    muscle text PRIMARY KEY CHECK (muscle ~ '^[a-z][a-z_]*$'),
    label  text NOT NULL,
    region text NOT NULL CHECK (region IN ('upper', 'lower', 'core'))
);

INSERT INTO fitness.muscle_groups (muscle, label, region) VALUES
    ('chest', 'Chest', 'upper'),
    ('front_delts', 'Front deltoids', 'upper'),
    ('side_delts', 'Side deltoids', 'upper'),
    ('rear_delts', 'Rear deltoids', 'upper'),
    ('triceps', 'Triceps', 'upper'),
    ('biceps', 'Biceps', 'upper'),
    ('forearms', 'Forearms', 'upper'),
    ('lats', 'Latissimus dorsi', 'upper'),
    ('upper_back', 'Upper back (rhomboids, mid traps)', 'upper'),
    ('traps', 'Upper trapezius', 'upper'),
    ('quads', 'Quadriceps', 'lower'),
    ('hamstrings', 'Hamstrings', 'lower'),
    ('glutes', 'Glutes', 'lower'),
    ('calves', 'Calves', 'lower'),
    ('abs', 'Abdominals', 'core'),
    ('obliques', 'Obliques', 'core'),
    ('lower_back', 'Lower back (erectors)', 'core'),
    ('hip_flexors', 'Hip flexors', 'lower'),
    ('adductors', 'Adductors', 'lower'),
    ('abductors', 'Abductors', 'lower');

-- source 'hashtag': keyword equals one of the exercise's normalised hashtags (lowercased);
-- source 'title': keyword is one or more whole words of the title, lowercased, where the
--   title is read as words of letters and digits (so 'push up' matches "Push-Up" and,
--   with a plural s, "Push-ups");
-- source 'equipment': keyword equals the exercise's equipment (lowercased).
CREATE TABLE fitness.muscle_map (
    source       text NOT NULL CHECK (source IN ('hashtag', 'title', 'equipment')),
    keyword      text NOT NULL,
    muscle       text NOT NULL
                 REFERENCES fitness.muscle_groups (muscle) ON UPDATE CASCADE ON DELETE CASCADE,
    contribution numeric(3, 2) NOT NULL CHECK (contribution > 0 AND contribution <= 1),
    PRIMARY KEY (source, keyword, muscle),
    CHECK (keyword <> '' AND keyword = lower(btrim(keyword))),
    CHECK (source <> 'title' OR keyword ~ '^[a-z0-9]+( [a-z0-9]+)*$')
);

-- Every canonical name is also a hashtag of itself.
INSERT INTO fitness.muscle_map (source, keyword, muscle, contribution)
SELECT 'hashtag', muscle, muscle, 1.0 FROM fitness.muscle_groups;

INSERT INTO fitness.muscle_map (source, keyword, muscle, contribution) VALUES
    -- hashtags as clients write them
    ('hashtag', 'pecs', 'chest', 1.0),
    ('hashtag', 'shoulders', 'front_delts', 1.0),
    ('hashtag', 'shoulders', 'side_delts', 1.0),
    ('hashtag', 'shoulders', 'rear_delts', 0.5),
    ('hashtag', 'delts', 'front_delts', 1.0),
    ('hashtag', 'delts', 'side_delts', 1.0),
    ('hashtag', 'delts', 'rear_delts', 0.5),
    ('hashtag', 'arms', 'biceps', 1.0),
    ('hashtag', 'arms', 'triceps', 1.0),
    ('hashtag', 'arms', 'forearms', 0.5),
    ('hashtag', 'grip', 'forearms', 1.0),
    ('hashtag', 'back', 'lats', 1.0),
    ('hashtag', 'back', 'upper_back', 1.0),
    ('hashtag', 'back', 'lower_back', 0.5),
    ('hashtag', 'legs', 'quads', 1.0),
    ('hashtag', 'legs', 'hamstrings', 0.5),
    ('hashtag', 'legs', 'glutes', 0.5),
    ('hashtag', 'posterior', 'hamstrings', 1.0),
    ('hashtag', 'posterior', 'glutes', 1.0),
    ('hashtag', 'posterior', 'lower_back', 0.5),
    ('hashtag', 'core', 'abs', 1.0),
    ('hashtag', 'core', 'obliques', 0.5),
    ('hashtag', 'core', 'lower_back', 0.5),
    -- title words
    ('title', 'bench press', 'chest', 1.0),
    ('title', 'bench press', 'triceps', 0.5),
    ('title', 'bench press', 'front_delts', 0.5),
    ('title', 'push up', 'chest', 1.0),
    ('title', 'push up', 'triceps', 0.5),
    ('title', 'push up', 'front_delts', 0.5),
    ('title', 'pushup', 'chest', 1.0),
    ('title', 'pushup', 'triceps', 0.5),
    ('title', 'pushup', 'front_delts', 0.5),
    ('title', 'fly', 'chest', 1.0),
    ('title', 'flye', 'chest', 1.0),
    ('title', 'dip', 'triceps', 1.0),
    ('title', 'dip', 'chest', 0.5),
    ('title', 'dip', 'front_delts', 0.5),
    ('title', 'overhead press', 'front_delts', 1.0),
    ('title', 'overhead press', 'side_delts', 0.5),
    ('title', 'overhead press', 'triceps', 0.5),
    ('title', 'shoulder press', 'front_delts', 1.0),
    ('title', 'shoulder press', 'side_delts', 0.5),
    ('title', 'shoulder press', 'triceps', 0.5),
    ('title', 'military press', 'front_delts', 1.0),
    ('title', 'military press', 'side_delts', 0.5),
    ('title', 'military press', 'triceps', 0.5),
    ('title', 'lateral raise', 'side_delts', 1.0),
    ('title', 'face pull', 'rear_delts', 1.0),
    ('title', 'face pull', 'upper_back', 0.5),
    ('title', 'rear delt fly', 'rear_delts', 1.0),
    ('title', 'row', 'upper_back', 1.0),
    ('title', 'row', 'lats', 1.0),
    ('title', 'row', 'biceps', 0.5),
    ('title', 'row', 'rear_delts', 0.5),
    ('title', 'pull up', 'lats', 1.0),
    ('title', 'pull up', 'biceps', 0.5),
    ('title', 'pull up', 'upper_back', 0.5),
    ('title', 'pullup', 'lats', 1.0),
    ('title', 'pullup', 'biceps', 0.5),
    ('title', 'pullup', 'upper_back', 0.5),
    ('title', 'chin up', 'lats', 1.0),
    ('title', 'chin up', 'biceps', 1.0),
    ('title', 'pulldown', 'lats', 1.0),
    ('title', 'pulldown', 'biceps', 0.5),
    ('title', 'shrug', 'traps', 1.0),
    ('title', 'bicep curl', 'biceps', 1.0),
    ('title', 'biceps curl', 'biceps', 1.0),
    ('title', 'hammer curl', 'biceps', 1.0),
    ('title', 'hammer curl', 'forearms', 0.5),
    ('title', 'preacher curl', 'biceps', 1.0),
    ('title', 'triceps extension', 'triceps', 1.0),
    ('title', 'tricep extension', 'triceps', 1.0),
    ('title', 'pushdown', 'triceps', 1.0),
    ('title', 'skull crusher', 'triceps', 1.0),
    ('title', 'squat', 'quads', 1.0),
    ('title', 'squat', 'glutes', 1.0),
    ('title', 'squat', 'adductors', 0.5),
    ('title', 'lunge', 'quads', 1.0),
    ('title', 'lunge', 'glutes', 1.0),
    ('title', 'lunge', 'adductors', 0.5),
    ('title', 'leg press', 'quads', 1.0),
    ('title', 'leg press', 'glutes', 0.5),
    ('title', 'leg extension', 'quads', 1.0),
    ('title', 'leg curl', 'hamstrings', 1.0),
    ('title', 'deadlift', 'hamstrings', 1.0),
    ('title', 'deadlift', 'glutes', 1.0),
    ('title', 'deadlift', 'lower_back', 1.0),
    ('title', 'deadlift', 'traps', 0.5),
    ('title', 'deadlift', 'forearms', 0.5),
    ('title', 'good morning', 'hamstrings', 1.0),
    ('title', 'good morning', 'lower_back', 1.0),
    ('title', 'back extension', 'lower_back', 1.0),
    ('title', 'back extension', 'glutes', 0.5),
    ('title', 'hip thrust', 'glutes', 1.0),
    ('title', 'hip thrust', 'hamstrings', 0.5),
    ('title', 'glute bridge', 'glutes', 1.0),
    ('title', 'calf raise', 'calves', 1.0),
    ('title', 'plank', 'abs', 1.0),
    ('title', 'plank', 'obliques', 0.5),
    ('title', 'crunch', 'abs', 1.0),
    ('title', 'sit up', 'abs', 1.0),
    ('title', 'sit up', 'hip_flexors', 0.5),
    ('title', 'situp', 'abs', 1.0),
    ('title', 'situp', 'hip_flexors', 0.5),
    ('title', 'leg raise', 'abs', 1.0),
    ('title', 'leg raise', 'hip_flexors', 1.0),
    ('title', 'russian twist', 'obliques', 1.0),
    ('title', 'side plank', 'obliques', 1.0),
    ('title', 'hip adduction', 'adductors', 1.0),
    ('title', 'hip abduction', 'abductors', 1.0),
    -- equipment that implies the movement
    ('equipment', 'pullup_bar', 'lats', 1.0),
    ('equipment', 'pullup_bar', 'biceps', 0.5);

-- Per indexed exercise, the muscles it trains: the largest contribution of its matches and
-- which map rows matched ('hashtag:chest', 'title:bench press' ...).
CREATE VIEW fitness.exercise_muscles AS
    WITH words AS (
        SELECT pubkey,
               d,
               equipment,
               ' ' || btrim(regexp_replace(lower(coalesce(title, '')), '[^a-z0-9]+', ' ', 'g'))
                   || ' ' AS title_words
        FROM fitness.exercises
    ), matches AS (
        SELECT h.pubkey, h.d, m.muscle, m.contribution, 'hashtag:' || m.keyword AS matched
        FROM fitness.exercise_hashtags h
        JOIN fitness.muscle_map m ON m.source = 'hashtag' AND m.keyword = h.tag
        UNION ALL
        SELECT w.pubkey, w.d, m.muscle, m.contribution, 'title:' || m.keyword
        FROM words w
        JOIN fitness.muscle_map m
            ON m.source = 'title'
           AND (strpos(w.title_words, ' ' || m.keyword || ' ') > 0
                OR strpos(w.title_words, ' ' || m.keyword || 's ') > 0)
        UNION ALL
        SELECT w.pubkey, w.d, m.muscle, m.contribution, 'equipment:' || m.keyword
        FROM words w
        JOIN fitness.muscle_map m ON m.source = 'equipment' AND m.keyword = w.equipment
    )
    SELECT pubkey,
           d,
           muscle,
           max(contribution) AS contribution,
           array_agg(DISTINCT matched ORDER BY matched) AS matched_by
    FROM matches
    GROUP BY pubkey, d, muscle;

-- Per athlete, UTC week and muscle group: working sets of resolved exercises, weighted by
-- each exercise's contribution to the muscle. Rows of one week overlap (a bench press set
-- counts for chest, triceps and front delts): add weighted_sets across muscles only knowing
-- that. Sums are taken in numeric, so they are reproducible bit for bit.
CREATE VIEW fitness.weekly_load_by_muscle_group AS
    SELECT s.pubkey,
           s.week,
           m.muscle,
           count(DISTINCT s.exercise_pubkey || ':' || s.exercise_d) AS exercises,
           count(DISTINCT s.workout_event_id) AS workouts,
           count(*) AS sets,
           count(*) FILTER (WHERE m.contribution >= 1) AS primary_sets,
           sum(m.contribution)::double precision AS weighted_sets,
           sum(s.set_volume_kg::numeric * m.contribution)::double precision
               AS weighted_volume_kg
    FROM fitness.strength_sets s
    JOIN fitness.exercise_muscles m ON m.pubkey = s.exercise_pubkey AND m.d = s.exercise_d
    WHERE NOT s.is_warmup AND s.exercise_event_id IS NOT NULL
    GROUP BY s.pubkey, s.week, m.muscle;

-- Indexed exercises the map gives no muscle, most performed first in practice (order by
-- performed_sets): the rows an operator would add to fitness.muscle_map next.
CREATE VIEW fitness.unmapped_exercises AS
    SELECT e.pubkey,
           e.d,
           e.event_id,
           e.title,
           e.equipment,
           e.hashtags,
           (SELECT count(*) FROM fitness.workout_sets s
            WHERE s.exercise_pubkey = e.pubkey AND s.exercise_d = e.d) AS performed_sets
    FROM fitness.exercises e
    WHERE NOT EXISTS (
        SELECT FROM fitness.exercise_muscles m WHERE m.pubkey = e.pubkey AND m.d = e.d
    );
