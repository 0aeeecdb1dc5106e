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

Memory is bounded by ``max_bytes``, an estimate: each entry counts its JSON's length plus
:data:`ENTRY_OVERHEAD`. The least recently used entry goes first. No I/O, no asyncio.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ENTRY_OVERHEAD", "EventCache"]

ENTRY_OVERHEAD = 240
"""Bytes counted per entry beside the JSON's length: the str and bytes objects' headers, the
32-byte key and the ordered dict's slot (about 220 on CPython 3.11)."""


class EventCache:
    """Event JSON by 32-byte id, least recently used out first, within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, str] = OrderedDict()
        self.bytes = 0
        """The estimated size of what is held."""
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, event_id: bytes) -> bool:
        return event_id in self._entries

    def get(self, event_id: bytes) -> str | None:
        """The JSON stored under ``event_id``, marked as just used; None when not held."""
        raw = self._entries.get(event_id)
        if raw is None:
            self.misses += 1
            return None
        self._entries.move_to_end(event_id)
        self.hits += 1
        return raw

    def put(self, event_id: bytes, raw: str) -> None:
        """Hold ``raw`` under ``event_id`` (as the most recently used), evicting the least
        recently used entries beyond the bound. JSON larger than the bound is not held."""
        size = len(raw) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        entries = self._entries
        if event_id in entries:
            entries.move_to_end(event_id)
            return
        entries[event_id] = raw
        self.bytes += size
        while self.bytes > self.max_bytes:
            _old_id, old = entries.popitem(last=False)
            self.bytes -= len(old) + ENTRY_OVERHEAD
            self.evictions += 1
