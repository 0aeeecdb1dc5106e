"""Storage: PostgreSQL schema, migrations, the filter → SQL compiler and the event store."""
