"""The NIP-77 negentropy sessions of one connection, as a state machine.

``NEG-OPEN`` becomes a :class:`LoadItems` action: the shell loads ``(created_at, id)`` of
the events the filter matches and hands them to :meth:`Reconciliations.loaded`, which answers
the client's first message. Every later ``NEG-MSG`` is answered from those items alone (the
relay's side of negentropy keeps no other state), ``NEG-CLOSE`` forgets them, and
:meth:`Reconciliations.expire` closes the sessions left idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from relay.nostr.errors import NostrError
from relay.nostr.filters import DEFAULT_RULES, Filter, FilterRules, parse_filter
from relay.nostr.limits import Limits
from relay.nostr.messages import ClientNegClose, ClientNegMsg, ClientNegOpen
from relay.nostr.negentropy import Items, NegentropyError, respond
from relay.nostr.replies import NegErr, NegMsg

__all__ = ["LoadItems", "Reconciliations"]


@dataclass(eq=False, slots=True)
class _Open:
    touched: int
    """When the client last spoke in this session (unix seconds)."""
    items: Items | None = None
    """None while the items are loading."""
    first: bytes = field(default=b"")
    """The client's initial message, answered once the items are loaded."""


@dataclass(frozen=True, slots=True)
class LoadItems:
    """Load ``(created_at, id)`` of the events ``filter`` matches, at most ``limit`` of them
    (the newest), then call :meth:`Reconciliations.loaded` with ``token``."""

    sub_id: str
    filter: Filter
    limit: int
    token: object


_NOT_OPEN = NostrError("closed", "no negentropy session with this id")
_IDLE = NostrError("closed", "the negentropy session was idle too long")


def _decode_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise NostrError("invalid", "the negentropy message is not hex") from None


class Reconciliations:
    """The open negentropy sessions of one connection, by subscription id."""

    def __init__(self, limits: Limits, rules: FilterRules = DEFAULT_RULES) -> None:
        self.limits = limits
        self.rules = rules
        self.open: dict[str, _Open] = {}
        cap = limits.max_negentropy_records + 1
        self._filter_limits = msgspec.structs.replace(limits, max_limit=cap)
        """A filter's ``limit`` is honoured up to the record cap, not REQ's ``max_limit``."""

    def receive(
        self, message: ClientNegOpen | ClientNegMsg | ClientNegClose, now: int
    ) -> list[NegErr | NegMsg | LoadItems]:
        if isinstance(message, ClientNegOpen):
            return [self._open(message, now)]
        if isinstance(message, ClientNegMsg):
            return [self._message(message, now)]
        self.open.pop(message.sub_id, None)
        return []

    def _open(self, message: ClientNegOpen, now: int) -> NegErr | LoadItems:
        limits = self.limits
        sub_id = message.sub_id
        self.open.pop(sub_id, None)  # NIP-77: a NEG-OPEN on an open id replaces it
        try:
            if not 0 < len(sub_id) <= limits.max_subid_length:
                raise NostrError(
                    "invalid",
                    f"subscription id must be 1 to {limits.max_subid_length} characters",
                )
            if len(self.open) >= limits.max_negentropy_sessions:
                raise NostrError(
                    "rate-limited",
                    f"too many open negentropy sessions (at most {limits.max_negentropy_sessions})",
                )
            first = _decode_hex(message.message)
            flt = parse_filter(message.filter, self._filter_limits, self.rules)
        except NostrError as exc:
            return NegErr(sub_id, exc)
        state = _Open(now, first=first)
        self.open[sub_id] = state
        cap = limits.max_negentropy_records + 1
        limit = cap if flt.limit is None else min(flt.limit, cap)
        return LoadItems(sub_id, flt, limit, state)

    def loaded(
        self, sub_id: str, token: object, rows: Sequence[tuple[int, bytes]], now: int
    ) -> NegErr | NegMsg | None:
        """The items of :class:`LoadItems` arrived: the answer to the first message (None
        when the session was closed or replaced meanwhile)."""
        state = self.open.get(sub_id)
        if state is not token or state is None:
            return None
        limit = self.limits.max_negentropy_records
        if len(rows) > limit:
            del self.open[sub_id]
            return NegErr(
                sub_id,
                NostrError("blocked", f"too many records: the filter matches more than {limit}"),
            )
        state.items = Items(rows)
        state.touched = now
        return self._answer(sub_id, state, state.first)

    def failed(self, sub_id: str, token: object, error: NostrError) -> NegErr | None:
        """Loading the items failed: end the session with ``error``."""
        if self.open.get(sub_id) is not token:
            return None
        del self.open[sub_id]
        return NegErr(sub_id, error)

    def _message(self, message: ClientNegMsg, now: int) -> NegErr | NegMsg:
        sub_id = message.sub_id
        state = self.open.get(sub_id)
        if state is None:
            return NegErr(sub_id, _NOT_OPEN)
        if state.items is None:
            del self.open[sub_id]
            return NegErr(sub_id, NostrError("invalid", "NEG-MSG before the relay's answer"))
        try:
            data = _decode_hex(message.message)
        except NostrError as exc:
            del self.open[sub_id]
            return NegErr(sub_id, exc)
        state.touched = now
        return self._answer(sub_id, state, data)

    def _answer(self, sub_id: str, state: _Open, data: bytes) -> NegErr | NegMsg:
        assert state.items is not None
        try:
            return NegMsg(sub_id, respond(state.items, data, self.limits.negentropy_frame_bytes))
        except NegentropyError as exc:
            self.open.pop(sub_id, None)
            return NegErr(sub_id, NostrError("invalid", f"bad negentropy message: {exc}"))

    def expire(self, now: int) -> list[NegErr]:
        """Close the loaded sessions idle for ``negentropy_idle_seconds`` or more."""
        idle = self.limits.negentropy_idle_seconds
        if not idle:
            return []
        gone = [
            sub_id
            for sub_id, state in self.open.items()
            if state.items is not None and now - state.touched >= idle
        ]
        for sub_id in gone:
            del self.open[sub_id]
        return [NegErr(sub_id, _IDLE) for sub_id in gone]
