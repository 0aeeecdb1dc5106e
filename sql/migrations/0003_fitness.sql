-- The indexer's materialized fitness tables (schema "fitness"). Every row is derived from a
-- stored event by indexer.transform and kept equal to what `fitrelay reindex` would build.
-- ids and pubkeys are 64-character lowercase hex; times are timestamptz; measures are in
-- kilograms, metres and seconds beside the raw value and unit as published.

CREATE SCHEMA fitness;

-- Where the indexer is in the log: the highest events.seq whose effects are in the tables.
CREATE TABLE fitness.indexer_state (
    name       text PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Kind 33401: one row per address (pubkey, d), the current version.
CREATE TABLE fitness.exercises (
    pubkey           text NOT NULL,
    d                text NOT NULL,
    event_id         text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL,
    title            text,
    equipment        text,
    difficulty       text,
    format           text[] NOT NULL,
    format_units     text[] NOT NULL,
    format_units_raw text[] NOT NULL,
    instructions     text NOT NULL,
    exercise_type    text,
    category         text,
    hashtags         text[] NOT NULL,
    PRIMARY KEY (pubkey, d)
);
CREATE INDEX exercises_title_idx ON fitness.exercises (lower(title));

CREATE TABLE fitness.exercise_hashtags (
    pubkey text NOT NULL,
    d      text NOT NULL,
    tag    text NOT NULL,
    raw    text NOT NULL,
    FOREIGN KEY (pubkey, d) REFERENCES fitness.exercises ON DELETE CASCADE
);
CREATE INDEX exercise_hashtags_address_idx ON fitness.exercise_hashtags (pubkey, d);
CREATE INDEX exercise_hashtags_tag_idx ON fitness.exercise_hashtags (tag);

CREATE TABLE fitness.exercise_media (
    pubkey    text NOT NULL,
    d         text NOT NULL,
    position  integer NOT NULL,
    url       text,
    mime_type text,
    width     integer,
    height    integer,
    alt       text,
    raw       text NOT NULL,
    PRIMARY KEY (pubkey, d, position),
    FOREIGN KEY (pubkey, d) REFERENCES fitness.exercises ON DELETE CASCADE
);

-- Kind 33402: one row per address, the current version.
CREATE TABLE fitness.templates (
    pubkey                text NOT NULL,
    d                     text NOT NULL,
    event_id              text NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL,
    title                 text,
    template_type         text,
    rounds                double precision,
    duration_s            double precision,
    interval_s            double precision,
    rest_between_rounds_s double precision,
    rest_between_sets_s   double precision,
    difficulty            text,
    notes                 text NOT NULL,
    client                text,
    hashtags              text[] NOT NULL,
    PRIMARY KEY (pubkey, d)
);

-- The values of a set, shared by prescribed and performed sets: raw tag elements, the
-- exercise they name (kept raw; resolved when that exercise is indexed) and the values read
-- through the exercise's format.
CREATE TABLE fitness.template_sets (
    template_pubkey   text NOT NULL,
    template_d        text NOT NULL,
    position          integer NOT NULL,
    tag_index         integer NOT NULL,
    exercise_ref      text NOT NULL,
    exercise_pubkey   text,
    exercise_d        text,
    relay_hint        text,
    exercise_event_id text,
    set_number        integer NOT NULL,
    set_number_given  boolean NOT NULL,
    group_number      integer NOT NULL,
    values_raw        text[] NOT NULL,
    weight_kg         double precision,
    weight_raw        text,
    weight_unit       text,
    reps              double precision,
    rpe               double precision,
    set_type          text,
    set_type_raw      text,
    duration_s        double precision,
    distance_m        double precision,
    heart_rate        double precision,
    mapped_by         text NOT NULL,
    PRIMARY KEY (template_pubkey, template_d, position),
    FOREIGN KEY (template_pubkey, template_d) REFERENCES fitness.templates ON DELETE CASCADE
);
CREATE INDEX template_sets_exercise_idx ON fitness.template_sets (exercise_pubkey, exercise_d);
CREATE INDEX template_sets_unresolved_idx ON fitness.template_sets (exercise_pubkey, exercise_d)
    WHERE exercise_event_id IS NULL;

-- Workout records: kind 1301 in either dialect, and the legacy 33403.
CREATE TABLE fitness.workouts (
    event_id          text PRIMARY KEY,
    kind              integer NOT NULL,
    pubkey            text NOT NULL,
    d                 text,
    created_at        timestamptz NOT NULL,
    dialect           text NOT NULL CHECK (dialect IN ('nip101e', 'runstr')),
    title             text,
    workout_type      text,
    activity          text,
    activity_raw      text,
    started_at        timestamptz,
    ended_at          timestamptz,
    start_raw         text,
    end_raw           text,
    duration_s        double precision,
    duration_raw      text,
    completed         boolean,
    rounds_completed  double precision,
    interval_s        double precision,
    template_ref      text,
    template_pubkey   text,
    template_d        text,
    template_relay    text,
    template_event_id text,
    notes             text NOT NULL,
    client            text,
    source            text,
    hashtags          text[] NOT NULL,
    distance_m        double precision,
    distance_raw      text,
    distance_unit     text,
    elevation_gain_m  double precision,
    elevation_loss_m  double precision,
    calories          double precision,
    steps             double precision,
    avg_heart_rate    double precision,
    max_heart_rate    double precision,
    avg_pace_s_per_km double precision,
    avg_pace_raw      text,
    avg_pace_unit     text
);
CREATE INDEX workouts_pubkey_idx ON fitness.workouts (pubkey, created_at);
CREATE INDEX workouts_template_idx ON fitness.workouts (template_pubkey, template_d);

CREATE TABLE fitness.workout_sets (
    workout_event_id  text NOT NULL REFERENCES fitness.workouts ON DELETE CASCADE,
    position          integer NOT NULL,
    tag_index         integer NOT NULL,
    exercise_ref      text NOT NULL,
    exercise_pubkey   text,
    exercise_d        text,
    relay_hint        text,
    exercise_event_id text,
    set_number        integer NOT NULL,
    set_number_given  boolean NOT NULL,
    values_raw        text[] NOT NULL,
    weight_kg         double precision,
    weight_raw        text,
    weight_unit       text,
    reps              double precision,
    rpe               double precision,
    set_type          text,
    set_type_raw      text,
    duration_s        double precision,
    distance_m        double precision,
    heart_rate        double precision,
    mapped_by         text NOT NULL,
    PRIMARY KEY (workout_event_id, position)
);
CREATE INDEX workout_sets_exercise_idx ON fitness.workout_sets (exercise_pubkey, exercise_d);
CREATE INDEX workout_sets_unresolved_idx ON fitness.workout_sets (exercise_pubkey, exercise_d)
    WHERE exercise_event_id IS NULL;

CREATE TABLE fitness.workout_splits (
    workout_event_id text NOT NULL REFERENCES fitness.workouts ON DELETE CASCADE,
    split_number     integer NOT NULL,
    elapsed_s        double precision,
    pace_s           double precision,
    distance_raw     text,
    PRIMARY KEY (workout_event_id, split_number)
);

CREATE TABLE fitness.workout_prs (
    workout_event_id text NOT NULL REFERENCES fitness.workouts ON DELETE CASCADE,
    position         integer NOT NULL,
    exercise_ref     text NOT NULL,
    exercise_pubkey  text,
    exercise_d       text,
    metric           text,
    value            double precision,
    raw              text NOT NULL,
    PRIMARY KEY (workout_event_id, position)
);

-- Kind 1301 events that are not workouts in any known dialect (e-mail bridges, ...).
CREATE TABLE fitness.non_workouts (
    event_id   text PRIMARY KEY,
    pubkey     text NOT NULL,
    created_at timestamptz NOT NULL,
    reason     text NOT NULL
);

-- NIP-51 sets (30003, 30004) with at least one exercise or template member.
CREATE TABLE fitness.lists (
    kind        integer NOT NULL,
    pubkey      text NOT NULL,
    d           text NOT NULL,
    event_id    text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    title       text,
    description text,
    PRIMARY KEY (kind, pubkey, d)
);

CREATE TABLE fitness.list_items (
    list_kind     integer NOT NULL,
    list_pubkey   text NOT NULL,
    list_d        text NOT NULL,
    position      integer NOT NULL,
    member_ref    text NOT NULL,
    member_kind   integer,
    member_pubkey text,
    member_d      text,
    relay_hint    text,
    PRIMARY KEY (list_kind, list_pubkey, list_d, position),
    FOREIGN KEY (list_kind, list_pubkey, list_d) REFERENCES fitness.lists ON DELETE CASCADE
);
CREATE INDEX list_items_member_idx ON fitness.list_items (member_kind, member_pubkey, member_d);

-- What the indexer could not understand, per event (tag_index NULL: the whole event).
CREATE TABLE fitness.index_errors (
    event_id  text NOT NULL,
    kind      integer NOT NULL,
    tag_index integer,
    reason    text NOT NULL,
    detail    text NOT NULL
);
CREATE INDEX index_errors_event_idx ON fitness.index_errors (event_id);
CREATE INDEX index_errors_reason_idx ON fitness.index_errors (reason);

-- Unresolved references, one row per (referencing row, address): the fetcher's queue is the
-- view missing_references built on it.
CREATE VIEW fitness.unresolved_references AS
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
    FROM fitness.workouts WHERE template_ref IS NOT NULL AND template_event_id IS NULL;
