"""The one LISTEN connection of a process: commit notifications for every log follower.

A committing process sends ``NOTIFY fitrelay_events, '<highest seq>'``. The payload is a
hint that something was committed, never a position to rely on: followers re-read the log
after the last position they saw. Whoever follows the log (the live tail, the indexer, a
fetcher) registers a callback with :meth:`CommitListener.subscribe`; each is called with the
payload of every notification, and with ``""`` after every (re)connection, since commits may
have been missed while nobody listened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

__all__ = ["CHANNEL", "CommitListener"]

log = logging.getLogger(__name__)

CHANNEL = "fitrelay_events"
_MAX_DELAY = 10.0


class CommitListener:
    """A stage: keeps a LISTEN connection open (reconnecting with backoff) and fans each
    notification out to its subscribers."""

    name = "commit listener"

    def __init__(self, dsn: str, *, channel: str = CHANNEL) -> None:
        self.dsn = dsn
        self.channel = channel
        self._subscribers: list[Callable[[str], None]] = []
        self.connected = asyncio.Event()
        """Set while the LISTEN connection is up (tests wait on it)."""

    def subscribe(self, on_commit: Callable[[str], None]) -> None:
        """Call ``on_commit(payload)`` for every notification (``""``: look anyway)."""
        self._subscribers.append(on_commit)

    def _notify(self, payload: str) -> None:
        for on_commit in self._subscribers:
            try:
                on_commit(payload)
            except Exception:
                log.exception("commit listener: a subscriber failed")

    async def start(self) -> None:
        """Nothing to set up: :meth:`run` connects, and retries until it can."""

    async def stop(self) -> None:
        """Nothing to drain: the connection closes when :meth:`run` is cancelled."""

    async def run(self) -> None:
        def callback(_conn: object, _pid: object, _channel: object, payload: object) -> None:
            self._notify(str(payload))

        delay = 0.5
        while True:
            try:
                conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": "fitrelay-listen"}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("commit listener: cannot connect (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            delay = 0.5
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            try:
                await conn.add_listener(self.channel, callback)
                self.connected.set()
                self._notify("")  # anything committed while nobody listened
                await lost.wait()
                log.warning("commit listener: connection lost; reconnecting")
            finally:
                self.connected.clear()
                await conn.close()
