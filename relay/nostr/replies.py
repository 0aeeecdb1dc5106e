"""What the relay tells a client, as typed values, and the one place they become bytes.

The session (:mod:`relay.nostr.session`) decides every reply; the asyncio shell counts them
by their fields (verb, prefix, kind) and sends :func:`encode_reply`'s bytes, so it never
reads a frame back. Every client-visible sentence of the relay is written in this package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from relay.nostr.errors import NostrError, Prefix
from relay.nostr.messages import (
    encode_auth,
    encode_closed,
    encode_count,
    encode_neg_err,
    encode_neg_msg,
    encode_notice,
    encode_ok,
)

__all__ = [
    "AuthChallenge",
    "Closed",
    "Counted",
    "IngestStatus",
    "NegErr",
    "NegMsg",
    "Notice",
    "Ok",
    "Reply",
    "encode_reply",
]


class IngestStatus(enum.IntEnum):
    """What storing one event did (the codes of the database's ingest function)."""

    STORED = 0
    DUPLICATE = 1
    DELETED = 2
    ADDRESS_DELETED = 3
    SUPERSEDED = 4

    @property
    def reply(self) -> tuple[bool, str]:
        """The NIP-01 OK flag and message for this outcome."""
        accepted, error = self.answer
        return accepted, error.message if error is not None else ""

    @property
    def answer(self) -> tuple[bool, NostrError | None]:
        """The OK flag and, unless the event was simply stored, why."""
        return _INGEST_ANSWERS[self]


_INGEST_ANSWERS: dict[IngestStatus, tuple[bool, NostrError | None]] = {
    IngestStatus.STORED: (True, None),
    IngestStatus.DUPLICATE: (True, NostrError("duplicate", "already have this event")),
    IngestStatus.DELETED: (False, NostrError("blocked", "this event was deleted by its author")),
    IngestStatus.ADDRESS_DELETED: (
        False,
        NostrError("blocked", "this address was deleted by its author after this version"),
    ),
    IngestStatus.SUPERSEDED: (
        False,
        NostrError("duplicate", "a newer version of this address is stored"),
    ),
}


@dataclass(frozen=True, slots=True)
class Ok:
    """``["OK", id, accepted, message]``. ``error`` is set for every refusal (and for a
    duplicate, which is accepted); ``kind`` is the event's kind when it could be read."""

    event_id: str
    accepted: bool
    error: NostrError | None = None
    kind: int | None = None
    stored: bool = False
    """True when this event was stored now (not a duplicate, not ephemeral)."""

    @property
    def prefix(self) -> Prefix | None:
        return self.error.prefix if self.error is not None else None

    @classmethod
    def of(cls, event_id: str, kind: int, status: IngestStatus) -> Ok:
        """The OK for an event the writer handled."""
        accepted, error = status.answer
        return cls(event_id, accepted, error, kind, stored=status is IngestStatus.STORED)


@dataclass(frozen=True, slots=True)
class Notice:
    """``["NOTICE", message]``: a message that belongs to no event or subscription."""

    error: NostrError


@dataclass(frozen=True, slots=True)
class Closed:
    """``["CLOSED", sub_id, message]``: a REQ or COUNT refused or ended by the relay."""

    sub_id: str
    error: NostrError


@dataclass(frozen=True, slots=True)
class Counted:
    """``["COUNT", sub_id, {"count": n}]`` (NIP-45)."""

    sub_id: str
    count: int


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """``["AUTH", challenge]`` (NIP-42): sent when a connection opens, if AUTH is offered."""

    challenge: str


@dataclass(frozen=True, slots=True)
class NegMsg:
    """``["NEG-MSG", sub_id, hex]`` (NIP-77): the relay's side of a negentropy round."""

    sub_id: str
    message: bytes


@dataclass(frozen=True, slots=True)
class NegErr:
    """``["NEG-ERR", sub_id, reason]`` (NIP-77): the relay ends a negentropy session."""

    sub_id: str
    error: NostrError


Reply = Ok | Notice | Closed | Counted | AuthChallenge | NegMsg | NegErr


def encode_reply(reply: Reply) -> bytes:
    """The frame of one reply."""
    if isinstance(reply, Ok):
        message = reply.error.message if reply.error is not None else ""
        return encode_ok(reply.event_id, reply.accepted, message)
    if isinstance(reply, Closed):
        return encode_closed(reply.sub_id, reply.error.message)
    if isinstance(reply, Notice):
        return encode_notice(reply.error.message)
    if isinstance(reply, AuthChallenge):
        return encode_auth(reply.challenge)
    if isinstance(reply, NegMsg):
        return encode_neg_msg(reply.sub_id, reply.message)
    if isinstance(reply, NegErr):
        return encode_neg_err(reply.sub_id, reply.error.message)
    return encode_count(reply.sub_id, reply.count)
