"""The rows the log tail reads: the events appended to the log, with or without the event,
and the removals."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Appended", "Removed", "Stored"]


@dataclass(frozen=True, slots=True)
class Stored:
    """One row of the log."""

    seq: int
    raw: str
    """The event's JSON; empty when the reader said it holds the event (``known``)."""
    event_id: str = ""
    """The event's id, when the read asked for it."""


@dataclass(frozen=True, slots=True)
class Appended:
    """One row of the log, without the event."""

    seq: int
    event_id: str
    kind: int
    pubkey: str


@dataclass(frozen=True, slots=True)
class Removed:
    """One row of the removal log."""

    seq: int
    kind: int
    pubkey: str
    event_id: bytes
