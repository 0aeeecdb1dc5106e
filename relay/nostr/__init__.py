"""The sans-I/O Nostr core: events, filters, messages and sessions.

Nothing in this package does I/O, reads a clock or imports asyncio, asyncpg or websockets:
it takes plain data (and the current time, where it matters) and returns decisions and bytes.
"""
