-- The fetcher's memory: one row per missing address it has tried to fetch from upstream
-- relays. An address not found is tried again after a growing delay (next_attempt) and, after
-- fetcher.max_attempts tries, left as given_up; a found one is not fetched again. Operators
-- read this table to see what could not be completed, and delete a row to have it retried.
CREATE TABLE fitness.fetch_attempts (
    address       text PRIMARY KEY,
    kind          integer NOT NULL,
    pubkey        text NOT NULL,
    d             text NOT NULL,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_attempt  timestamptz,
    next_attempt  timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'found', 'given_up')),
    reason        text,
    last_upstream text
);
CREATE INDEX fetch_attempts_due_idx ON fitness.fetch_attempts (next_attempt)
    WHERE status = 'pending';

-- Which process fetches, when several share the database: a lease its holder renews each
-- round and gives back when it stops, taken over by another once it has expired (a holder
-- killed -9 loses it within a lease). Only the relay's role may write the row, so unlike an
-- advisory lock no reading role can take it or hold it hostage.
CREATE TABLE fitness.fetcher_lease (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    holder   text NOT NULL DEFAULT '',
    expires  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO fitness.fetcher_lease DEFAULT VALUES;
