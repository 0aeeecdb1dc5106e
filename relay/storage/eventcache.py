"""Stored event JSON by id, held in memory so that queries need not read it from PostgreSQL.

An event's id is the hash of its content, so the JSON stored under an id never changes: an
entry cannot go stale, whatever is later written, replaced, deleted or expired. With a cache,
:meth:`~relay.storage.postgres.Store.query` asks PostgreSQL only which events answer a filter
(``created_at`` and ``id`` of each, from the indexes and the table's small columns) and takes
their JSON from here; the ids it does not hold are read from ``events`` by primary key in one
more statement. Reading the JSON is most of a query's cost when events are large: at 100,000
events, a ``#p`` answer of 100 contact lists (about 1 MB, stored out of line in TOAST) took
1.3 ms of PostgreSQL and driver time with the JSON and 0.25 ms without it.

Entries come in when this process stores an event and when a query reads one. Removed events
are not dropped (a query never names them again, so they cost only memory until evicted).

Memory is bounded by ``max_bytes``, an estimate: each entry counts the size of its JSON's str
object (one byte a character when all are Latin-1, two or four when some are beyond it; a
fifth of the benchmark's events hold text beyond ASCII) plus :data:`ENTRY_OVERHEAD`. The
entry put in longest ago goes first (an event read after it went comes back in as a new one).
Recency of use is not tracked: keeping an ordered dict in use order made a lookup cost 0.8 µs
against 0.2-0.3 µs for a plain dict (measured at 120,000 entries), and an answer of 100
events looks up 100. No I/O, no asyncio.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Sequence

__all__ = ["ENTRY_OVERHEAD", "EventCache"]

ENTRY_OVERHEAD = 160
"""Bytes counted per entry beside its JSON's str object: the 32-byte key's bytes object (65),
the dict's slot and the order queue's pointer (about 50 measured at 120,000 entries on
CPython 3.11, more just after the dict has grown)."""


class EventCache:
    """Event JSON by 32-byte id, first in first out, within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self._entries: dict[bytes, str] = {}
        self._order: deque[bytes] = deque()
        """The ids held, in the order they were put in."""
        self.bytes = 0
        """The estimated size of what is held."""
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, event_id: bytes) -> bool:
        return event_id in self._entries

    def lookup(self, ids: Sequence[bytes]) -> list[str | None]:
        """The JSON stored under each of ``ids``, None for those not held."""
        get = self._entries.get
        found = [get(event_id) for event_id in ids]
        missing = found.count(None)
        self.misses += missing
        self.hits += len(found) - missing
        return found

    def put(self, event_id: bytes, raw: str) -> None:
        """Hold ``raw`` under ``event_id``, evicting the entries put in longest ago beyond the
        bound. JSON larger than the bound is not held."""
        size = sys.getsizeof(raw) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        entries = self._entries
        if event_id in entries:
            return
        entries[event_id] = raw
        self._order.append(event_id)
        self.bytes += size
        while self.bytes > self.max_bytes:
            old = entries.pop(self._order.popleft())
            self.bytes -= sys.getsizeof(old) + ENTRY_OVERHEAD
            self.evictions += 1
