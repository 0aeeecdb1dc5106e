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
