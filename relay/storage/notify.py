"""The one LISTEN connection of a process: commit notifications for every log follower.

A committing process sends ``NOTIFY fitrelay_events, '<highest seq>'``. Any role that can
connect may send a NOTIFY too, so the payload is passed on only when the sending backend
runs as the relay's own role (checked once per backend in ``pg_stat_activity``); from anyone
else a notification is a bare wake-up (``""``). Followers re-read the log after the last
position they saw either way: a notification is a hint, never the log.

Whoever follows the log (the live tail, the indexer, a fetcher) registers a callback with
:meth:`CommitListener.subscribe`; each is called with the payload of every notification, and
with ``""`` after every (re)connection, since commits may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from relay.storage.failures import DATABASE_ERRORS
from relay.storage.queries import load_queries

__all__ = ["CHANNEL", "CommitListener"]

log = logging.getLogger(__name__)

_Q = load_queries("notify.sql")
CHANNEL = "fitrelay_events"
_MAX_DELAY = 10.0
_TRUST_SECONDS = 60.0
"""How long a backend found to run as the relay's role is trusted without a new look (a
pid may be reused by another backend later)."""
_MAX_TRUSTED = 4_096
_QUEUED = 10_000
"""Notifications waiting for their sender to be checked; past this, the payloads of the
newest are dropped (each still wakes the followers)."""


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
        self._trusted: dict[int, float] = {}
        """Backend pids known to run as the relay's role, with when that was checked."""
        self._inbox: asyncio.Queue[tuple[int, str]] = asyncio.Queue(_QUEUED)
        self.untrusted = 0
        """Notifications whose payload was dropped: sent by another role."""

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

    def _received(self, pid: int, payload: str) -> None:
        checked = self._trusted.get(pid)
        if not payload or (checked is not None and time.monotonic() - checked < _TRUST_SECONDS):
            self._notify(payload)
            return
        try:
            self._inbox.put_nowait((pid, payload))
        except asyncio.QueueFull:
            self._notify("")

    async def _check_senders(self, conn: Any) -> None:
        """Pass on the payloads of notifications from backends of the relay's own role."""
        while True:
            pid, payload = await self._inbox.get()
            checked = self._trusted.get(pid)
            now = time.monotonic()
            if checked is None or now - checked >= _TRUST_SECONDS:
                own = await conn.fetchval(_Q["sender_is_relay"], pid)
                if own:
                    if len(self._trusted) >= _MAX_TRUSTED:
                        self._trusted.clear()
                    self._trusted[pid] = now
                else:
                    self._trusted.pop(pid, None)
                    self.untrusted += 1
                    log.debug("commit listener: payload from pid %d (another role) ignored", pid)
                    payload = ""
            self._notify(payload)

    async def run(self) -> None:
        def callback(_conn: object, pid: object, _channel: object, payload: object) -> None:
            self._received(pid if isinstance(pid, int) else 0, str(payload))

        delay = 0.5
        while True:
            try:
                conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": "fitrelay-listen"}
                )
            except DATABASE_ERRORS as exc:
                log.warning("commit listener: cannot connect (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            delay = 0.5
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            checker = asyncio.create_task(self._check_senders(conn))
            try:
                await conn.add_listener(self.channel, callback)
                self.connected.set()
                self._notify("")  # anything committed while nobody listened
                waiting = asyncio.create_task(lost.wait())
                await asyncio.wait([checker, waiting], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if checker.done() and not checker.cancelled() and checker.exception():
                    log.warning("commit listener: %s; reconnecting", checker.exception())
                else:
                    log.warning("commit listener: connection lost; reconnecting")
            finally:
                self.connected.clear()
                checker.cancel()
                await asyncio.gather(checker, return_exceptions=True)
                await conn.close()
