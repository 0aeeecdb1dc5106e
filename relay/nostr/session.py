"""One client connection as a state machine: frames in, typed outcomes out.

The asyncio shell (:mod:`relay.server.connection`) feeds every text frame to
:meth:`Session.receive` with the current time and carries out the returned outcomes in order:
replies (:mod:`relay.nostr.replies`) it encodes and sends, actions (store, subscribe,
unsubscribe, count) it performs. What happens later (a commit, a failed query) is turned into
a reply by the session's other methods, so every :class:`~relay.nostr.errors.NostrError`
becomes an OK, CLOSED or NOTICE here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from relay.nostr.errors import NostrError
from relay.nostr.event import (
    Event,
    decode_event,
    expiration,
    refuse_duplicate_keys,
    validate_event,
)
from relay.nostr.filters import Filter, parse_filter
from relay.nostr.limits import Limits
from relay.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientNegClose,
    ClientNegMsg,
    ClientNegOpen,
    ClientReq,
    decode_client_message,
)
from relay.nostr.policy import DEFAULT_POLICIES, ConnInfo, Policies
from relay.nostr.reconciliation import LoadItems, Reconciliations
from relay.nostr.replies import Closed, Counted, IngestStatus, NegErr, Notice, Ok, Reply
from relay.nostr.verify import verify_signature

__all__ = [
    "Action",
    "Count",
    "LoadItems",
    "Outcome",
    "Session",
    "StoreEvent",
    "Subscribe",
    "Unsubscribe",
    "check_event",
    "claimed_id",
]


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """A verified event the policies let through: store it (or broadcast it, if
    ephemeral), then answer with :meth:`Session.stored`."""

    event: Event
    raw: bytes


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Run the filters against storage, send EOSE, then stream live matches.

    Replaces any open subscription with the same id.
    """

    sub_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    sub_id: str


@dataclass(frozen=True, slots=True)
class Count:
    """Count the union of the filters and answer with COUNT (NIP-45)."""

    sub_id: str
    filters: tuple[Filter, ...]


Action = StoreEvent | Subscribe | Unsubscribe | Count | LoadItems
Outcome = Reply | Action

_lenient = msgspec.json.Decoder()
_NOBODY = ConnInfo()
"""A connection that has authenticated as no one (``fitrelay import``)."""


def claimed_id(raw: bytes) -> str | None:
    """The ``id`` a malformed event claims, so a rejection can still be an OK message."""
    return _claimed(raw)[0]


def _claimed(raw: bytes) -> tuple[str | None, int | None]:
    """The ``id`` and ``kind`` a refused event claims, when they can be read."""
    try:
        obj = _lenient.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    claimed = obj.get("id")
    kind = obj.get("kind")
    return (
        claimed if isinstance(claimed, str) and 0 < len(claimed) <= 64 else None,
        kind if isinstance(kind, int) and not isinstance(kind, bool) else None,
    )


def check_event(
    raw: bytes,
    limits: Limits,
    now: int,
    policies: Policies = DEFAULT_POLICIES,
    conn: ConnInfo = _NOBODY,
) -> Event:
    """Every check the relay applies to a published event, in order, cheapest first.

    Shape (no key twice) and limits, time window and id (:func:`validate_event`), NIP-40
    expiration, the policies' event rules (NIP-70 among them), then the signature. Used for
    EVENT messages and by ``fitrelay import``.

    Raises:
        NostrError: the OK message that tells the client why.
    """
    event = decode_event(raw)
    refuse_duplicate_keys(raw)
    validate_event(event, len(raw), limits, now)
    expires = expiration(event)
    if expires is not None and expires <= now:
        raise NostrError("invalid", "event has expired")
    refused = policies.check_event(conn, event, now)
    if refused is not None:
        raise refused
    if not verify_signature(event.id, event.pubkey, event.sig):
        raise NostrError("invalid", "bad signature")
    return event


def _rejected(raw: bytes, error: NostrError) -> Reply:
    claimed, kind = _claimed(raw)
    if claimed is None:
        return Notice(error)
    return Ok(claimed, False, error, kind)


_STORE_FAILED = NostrError("error", "could not store the event; try again")
_QUERY_SLOW = NostrError("error", "query took too long; narrow the filter")
_QUERY_FAILED = NostrError("error", "could not run the query")
_COUNT_SLOW = NostrError("error", "count took too long; narrow the filter")
_COUNT_FAILED = NostrError("error", "could not run the count")
_BINARY = NostrError("invalid", "binary frames are not supported")


class Session:
    """The protocol state of one connection: its open subscriptions, limits and policies,
    and who the client has authenticated as."""

    def __init__(
        self,
        limits: Limits,
        policies: Policies = DEFAULT_POLICIES,
        *,
        conn_id: int = 0,
        ip: str = "",
    ) -> None:
        self.limits = limits
        self.policies = policies
        self.conn = ConnInfo(conn_id, ip)
        """What policy rules see of this connection (AUTH will add pubkeys to it)."""
        self.subscriptions: set[str] = set()
        self.verb = "invalid"
        """The type of the message last received (``invalid`` when it had none)."""
        self.negentropy = Reconciliations(limits)
        """The open NIP-77 sessions."""

    def receive(self, text: str, now: int) -> list[Outcome]:
        """Handle one text frame received at unix time ``now``.

        (Invalid UTF-8 never gets here: the WebSocket layer closes with 1007, as RFC 6455
        requires.)
        """
        self.verb = "invalid"
        try:
            message = decode_client_message(text)
        except NostrError as exc:
            return [Notice(exc)]
        self.verb = message.verb
        if self._too_large(text):
            error = NostrError(
                "invalid", f"message is larger than {self.limits.max_message_bytes} bytes"
            )
            if isinstance(message, ClientEvent):
                return [_rejected(message.raw, error)]
            if isinstance(message, ClientReq | ClientCount):
                return [Closed(message.sub_id, error)]
            if isinstance(message, ClientNegOpen | ClientNegMsg):
                self.negentropy.open.pop(message.sub_id, None)  # NEG-ERR ends the session
                return [NegErr(message.sub_id, error)]
            return [Notice(error)]
        if isinstance(message, ClientEvent):
            return [self._event(message.raw, now)]
        if isinstance(message, ClientReq):
            return [self._req(message, now)]
        if isinstance(message, ClientCount):
            return [self._count(message, now)]
        if isinstance(message, ClientNegOpen | ClientNegMsg | ClientNegClose):
            return self._negentropy(message, now)
        if isinstance(message, ClientClose):
            self.subscriptions.discard(message.sub_id)
            return [Unsubscribe(message.sub_id)]
        assert isinstance(message, ClientAuth)
        return [Notice(NostrError("unsupported", "AUTH (NIP-42) is not supported by this relay"))]

    def binary(self) -> Notice:
        """A binary frame arrived: Nostr messages are text."""
        self.verb = "invalid"
        return Notice(_BINARY)

    # -- what happened later, as replies -------------------------------------------------

    def stored(self, event: Event, status: IngestStatus) -> Ok:
        """The writer committed the batch holding ``event`` with this outcome."""
        return Ok.of(event.id, event.kind, status)

    def broadcast(self, event: Event) -> Ok:
        """An ephemeral event went to the live subscribers (ephemeral events are not stored)."""
        return Ok(event.id, True, None, event.kind)

    def refused(self, event: Event, error: NostrError) -> Ok:
        """A rule in front of the writer refused ``event``."""
        return Ok(event.id, False, error, event.kind)

    def store_failed(self, event: Event) -> Ok:
        """The batch holding ``event`` did not commit (database away, shutting down)."""
        return Ok(event.id, False, _STORE_FAILED, event.kind)

    def query_failed(self, sub_id: str, *, timed_out: bool) -> Closed:
        """The relay ends a subscription whose stored query failed: forget it, say CLOSED."""
        self.subscriptions.discard(sub_id)
        return Closed(sub_id, _QUERY_SLOW if timed_out else _QUERY_FAILED)

    def count_failed(self, sub_id: str, *, timed_out: bool) -> Closed:
        return Closed(sub_id, _COUNT_SLOW if timed_out else _COUNT_FAILED)

    def counted(self, sub_id: str, count: int) -> Counted:
        return Counted(sub_id, count)

    # -- messages --------------------------------------------------------------------------

    def _too_large(self, text: str) -> bool:
        limit = self.limits.max_message_bytes
        return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)

    def _event(self, raw: bytes, now: int) -> Reply | StoreEvent:
        try:
            event = check_event(raw, self.limits, now, self.policies, self.conn)
        except NostrError as exc:
            return _rejected(raw, exc)
        return StoreEvent(event, raw)

    def _filters(self, sub_id: str, raw_filters: list[object], now: int) -> tuple[Filter, ...]:
        if not 0 < len(sub_id) <= self.limits.max_subid_length:
            raise NostrError(
                "invalid",
                f"subscription id must be 1 to {self.limits.max_subid_length} characters",
            )
        if not raw_filters:
            raise NostrError("invalid", "at least one filter is required")
        if len(raw_filters) > self.limits.max_filters:
            raise NostrError("invalid", f"more than {self.limits.max_filters} filters")
        filters = tuple(parse_filter(raw, self.limits) for raw in raw_filters)
        refused = self.policies.check_filters(self.conn, filters, now)
        if refused is not None:
            raise refused
        return filters

    def _req(self, message: ClientReq, now: int) -> Closed | Subscribe:
        sub_id = message.sub_id
        try:
            filters = self._filters(sub_id, message.filters, now)
            if (
                sub_id not in self.subscriptions
                and len(self.subscriptions) >= self.limits.max_subscriptions
            ):
                raise NostrError(
                    "rate-limited",
                    f"too many open subscriptions (at most {self.limits.max_subscriptions})",
                )
        except NostrError as exc:
            return Closed(sub_id, exc)
        self.subscriptions.add(sub_id)
        return Subscribe(sub_id, filters)

    def _negentropy(
        self, message: ClientNegOpen | ClientNegMsg | ClientNegClose, now: int
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for outcome in self.negentropy.receive(message, now):
            if isinstance(outcome, LoadItems):
                refused = self.policies.check_filters(self.conn, (outcome.filter,), now)
                if refused is not None:
                    self.negentropy.open.pop(outcome.sub_id, None)
                    outcomes.append(NegErr(outcome.sub_id, refused))
                    continue
            outcomes.append(outcome)
        return outcomes

    def _count(self, message: ClientCount, now: int) -> Closed | Count:
        try:
            filters = self._filters(message.sub_id, message.filters, now)
        except NostrError as exc:
            return Closed(message.sub_id, exc)
        return Count(message.sub_id, filters)
