-- fitrelay sync's checkpoints: how far a sync by REQ pages got with an upstream, so one that
-- was interrupted (Ctrl-C, the upstream dropping or going silent) continues from there when
-- run again with the same upstream, filter and direction. A row is written after each page
-- is stored and deleted when the sync completes; `fitrelay sync --restart` deletes it first.
-- Relay bookkeeping in schema public, so fitrelay_reader does not read it (migration 0008).
CREATE TABLE sync_checkpoints (
    upstream     text NOT NULL,
    filter       text NOT NULL,
    direction    text NOT NULL CHECK (direction IN ('down', 'up', 'both')),
    phase        text NOT NULL CHECK (phase IN ('down', 'up')),
    until_at     bigint,
    boundary_ids text[] NOT NULL DEFAULT '{}',
    sent_through text,
    pages        integer NOT NULL DEFAULT 0 CHECK (pages >= 0),
    counts       jsonb NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upstream, filter, direction)
);
