"""Policy hooks: who may write what, and who may read what, as plain data.

A :class:`Policies` value is built once by the composition root and handed to every
session (the rules that need nothing but the event or the filters) and to the connection
shell (rules that must wait on something, run as a stage in front of the writer). Each rule
returns a :class:`~relay.nostr.errors.NostrError` (its prefix becomes the OK or CLOSED
prefix) or None. NIP-11's ``limitation`` merges what the policies in force imply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from relay.nostr.auth import AUTH_KIND
from relay.nostr.errors import NostrError
from relay.nostr.event import Event, is_protected
from relay.nostr.filters import Filter

__all__ = [
    "DEFAULT_POLICIES",
    "AdmitRule",
    "ConnInfo",
    "EventRule",
    "FilterRule",
    "Policies",
    "ShadowRejected",
    "ThrottleRule",
    "refuse_auth_event",
    "refuse_protected",
]


@dataclass(frozen=True, slots=True)
class ConnInfo:
    """What a rule may know of the connection: its id, the client's address, the pubkeys
    it has authenticated as (NIP-42) and whether AUTH is offered on it at all."""

    conn_id: int = 0
    ip: str = ""
    authed: frozenset[str] = frozenset()
    auth_offered: bool = False


class EventRule(Protocol):
    def __call__(self, conn: ConnInfo, event: Event, now: int) -> NostrError | None:
        """Why ``event`` may not be written on ``conn`` at ``now``; None to let it pass."""
        ...


class FilterRule(Protocol):
    def __call__(self, conn: ConnInfo, filters: tuple[Filter, ...], now: int) -> NostrError | None:
        """Why this REQ or COUNT may not run on ``conn``; None to let it run."""
        ...


class ShadowRejected(NostrError):
    """An admit rule's refusal the client is not told of: it gets OK true and the event is
    not stored (strfry's ``shadowReject``)."""

    def __init__(self, reason: str = "shadow-rejected") -> None:
        super().__init__("blocked", reason)


class AdmitRule(Protocol):
    def __call__(self, conn: ConnInfo, event: Event) -> Awaitable[NostrError | None]:
        """A rule that waits (a plugin, the database): run in front of the writer."""
        ...


class ThrottleRule(Protocol):
    def __call__(self, conn: ConnInfo, verb: str) -> NostrError | None:
        """Why one more ``verb`` message (EVENT, REQ, COUNT) may not be handled now on
        ``conn``; checked before anything else is done with the message."""
        ...


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Policies:
    """Every rule in force. The first rule that refuses decides the answer."""

    reject_event: tuple[EventRule, ...] = ()
    reject_filters: tuple[FilterRule, ...] = ()
    admit_event: tuple[AdmitRule, ...] = ()
    limitation: Mapping[str, object] = field(default_factory=lambda: _frozen({}))
    """NIP-11 ``limitation`` fields these rules imply (``restricted_writes``, ...)."""
    retention: tuple[Mapping[str, object], ...] = ()
    """NIP-11 ``retention`` entries these rules imply (kinds never stored: ``time`` 0)."""
    throttle: tuple[ThrottleRule, ...] = ()
    """Rate limits, checked first for EVENT, REQ and COUNT (a refusal is OK false or
    CLOSED)."""

    def check_rate(self, conn: ConnInfo, verb: str) -> NostrError | None:
        for rule in self.throttle:
            error = rule(conn, verb)
            if error is not None:
                return error
        return None

    def check_event(self, conn: ConnInfo, event: Event, now: int) -> NostrError | None:
        for rule in self.reject_event:
            error = rule(conn, event, now)
            if error is not None:
                return error
        return None

    def check_filters(
        self, conn: ConnInfo, filters: tuple[Filter, ...], now: int
    ) -> NostrError | None:
        for rule in self.reject_filters:
            error = rule(conn, filters, now)
            if error is not None:
                return error
        return None

    async def admit(self, conn: ConnInfo, event: Event) -> NostrError | None:
        for rule in self.admit_event:
            error = await rule(conn, event)
            if error is not None:
                return error
        return None

    def __add__(self, other: Policies) -> Policies:
        return Policies(
            self.reject_event + other.reject_event,
            self.reject_filters + other.reject_filters,
            self.admit_event + other.admit_event,
            _frozen({**self.limitation, **other.limitation}),
            self.retention + other.retention,
            self.throttle + other.throttle,
        )


def refuse_protected(conn: ConnInfo, event: Event, now: int) -> NostrError | None:
    """NIP-70: an event tagged ``["-"]`` is accepted only from its authenticated author."""
    if not is_protected(event) or event.pubkey in conn.authed:
        return None
    if not conn.auth_offered:
        return NostrError(
            "restricted", "protected events (NIP-70) need AUTH, which this relay does not offer"
        )
    if not conn.authed:
        return NostrError(
            "auth-required", "this event is protected (NIP-70): authenticate as its author"
        )
    return NostrError(
        "restricted", "a protected event (NIP-70) is accepted only from its authenticated author"
    )


def refuse_auth_event(conn: ConnInfo, event: Event, now: int) -> NostrError | None:
    """NIP-42: kind 22242 answers a challenge with AUTH; it is never stored or broadcast."""
    if event.kind == AUTH_KIND:
        return NostrError("invalid", "kind 22242 is sent with AUTH, not EVENT")
    return None


DEFAULT_POLICIES = Policies(reject_event=(refuse_protected, refuse_auth_event))
"""The rules every relay applies unless configured otherwise."""
