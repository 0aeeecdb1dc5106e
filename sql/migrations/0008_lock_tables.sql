-- Locks no other role can take or hold hostage, and a reader confined to what it is for.
--
-- Advisory locks belong to nobody: any role that may connect can take pg_advisory_lock(k)
-- for any k, and so hold the relay's writers, its migrations or its indexer hostage. The
-- relay's locks become table locks instead. LOCK TABLE ... IN EXCLUSIVE MODE needs UPDATE,
-- DELETE or TRUNCATE on the table, and EXCLUSIVE conflicts with every mode but ACCESS
-- SHARE, the only one SELECT allows; so a role that may at most read a lock table can
-- neither take the lock nor keep anyone from taking it. Table locks live in memory and end
-- with the transaction, as pg_advisory_xact_lock did: no row is written, no WAL.
--
--   events' writers       LOCK TABLE fitrelay_log_lock IN EXCLUSIVE MODE (was 7447001)
--   migrations            LOCK TABLE schema_migrations IN EXCLUSIVE MODE (was 7447000)
--   indexer batches       LOCK TABLE fitness.indexer_state IN EXCLUSIVE MODE (was 7447002)
--
-- fitrelay_log_lock holds nothing: it exists to be locked (a table nobody writes is never
-- vacuumed, which would conflict with the lock). Nobody but its owner has any privilege on it.
CREATE TABLE fitrelay_log_lock ();
COMMENT ON TABLE fitrelay_log_lock IS
    'Locked IN EXCLUSIVE MODE by every transaction that changes events, so seq values '
    'become visible in order; holds no rows';
REVOKE ALL ON fitrelay_log_lock FROM PUBLIC;

-- The two ingest functions take the new lock where they took the advisory one. Their
-- bodies are otherwise those of 0005, so they are rewritten from the catalog rather than
-- copied here; the check after the loop proves nothing still takes an advisory lock.
DO $lock$
DECLARE
    fn  regprocedure;
    def text;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND p.proname IN ('fitrelay_ingest_serial', 'fitrelay_ingest_bulk')
    LOOP
        def := pg_get_functiondef(fn);
        IF position('PERFORM pg_advisory_xact_lock(7447001);' IN def) = 0 THEN
            RAISE EXCEPTION '% does not take advisory lock 7447001', fn;
        END IF;
        EXECUTE replace(def, 'PERFORM pg_advisory_xact_lock(7447001);',
                        'LOCK TABLE fitrelay_log_lock IN EXCLUSIVE MODE;');
    END LOOP;
    IF EXISTS (
        SELECT FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace AND prosrc LIKE '%pg_advisory%'
    ) THEN
        RAISE EXCEPTION 'a function of schema public still takes an advisory lock';
    END IF;
END
$lock$;

-- What fitrelay_reader reads: the fitness schema (tables and research views) and the
-- published events with their tags. Not the relay's bookkeeping (tombstones, the removal
-- log, the migration ledger, the lock table), nor tables added to public later.
DO $reader$
DECLARE
    obj regclass;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fitrelay_reader') THEN
        RETURN;
    END IF;
    FOR obj IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND c.relname NOT IN ('events', 'event_tags', 'schema_migrations')
          AND pg_has_role(c.relowner, 'USAGE')
        ORDER BY c.oid
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM fitrelay_reader', obj);
    END LOOP;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM fitrelay_reader;
END
$reader$;

-- Database-level privileges are not copied by CREATE DATABASE ... TEMPLATE nor restored by
-- pg_dump, so the migration runner calls this after every run (it changes nothing when
-- nothing needs changing). The reader gets TEMPORARY and CREATE on schema public through
-- PUBLIC, so those are revoked from PUBLIC; the user migrating keeps TEMPORARY.
CREATE FUNCTION fitrelay_restrict_reader() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fitrelay_reader') THEN
        RETURN;
    END IF;
    IF has_database_privilege('fitrelay_reader', current_database(), 'TEMPORARY') THEN
        IF has_database_privilege(current_user, current_database(), 'TEMPORARY WITH GRANT OPTION')
        THEN
            EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I',
                           current_database(), current_user);
            EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, fitrelay_reader',
                           current_database());
        ELSE
            RAISE NOTICE 'fitrelay_reader: % may not revoke TEMPORARY on database %',
                current_user, current_database();
        END IF;
    END IF;
    IF has_schema_privilege('fitrelay_reader', 'public', 'CREATE') THEN
        IF pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = 'public'), 'USAGE')
        THEN
            REVOKE CREATE ON SCHEMA public FROM PUBLIC, fitrelay_reader;
        ELSE
            RAISE NOTICE 'fitrelay_reader: % may not revoke CREATE on schema public',
                current_user;
        END IF;
    END IF;
END;
$$;
