-- The sets, splits and PR claims of a workout record are written and removed by the indexer
-- alone, in the same statements as the record (indexer.sql: remove_workout,
-- bulk_remove_workouts, clear_tables). Their foreign keys to fitness.workouts checked every
-- inserted row against the record just written, a lookup and a row lock per set that cost a
-- cold catch-up as much as all the other work of writing the set; they go, and the removals
-- name the children themselves instead of cascading.
ALTER TABLE fitness.workout_sets DROP CONSTRAINT workout_sets_workout_event_id_fkey;
ALTER TABLE fitness.workout_splits DROP CONSTRAINT workout_splits_workout_event_id_fkey;
ALTER TABLE fitness.workout_prs DROP CONSTRAINT workout_prs_workout_event_id_fkey;
