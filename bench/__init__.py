"""The fitrelay benchmark harness (``python -m bench --help``; ``make bench``).

Generates signed, fitness-heavy Nostr traffic once and caches it, starts the relays under test
on fresh PostgreSQL databases, measures durable ingest, REQ queries (every answer checked
against an independent model of NIP-01), live fan-out and idle-connection memory, and writes
the figures as JSON and as a Markdown table in ``docs/benchmarks.md``.
"""
