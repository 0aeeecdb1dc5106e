"""One client connection as a state machine: frames in, actions out.

The asyncio shell (:mod:`relay.server.connection`) feeds every text frame to
:meth:`Session.receive` with the current time and carries out the returned actions in order.
Every :class:`~relay.nostr.errors.NostrError` becomes an OK, CLOSED or NOTICE here and nowhere
else.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from relay.nostr.errors import NostrError
from relay.nostr.event import Event, decode_event, expiration, is_protected, validate_event
from relay.nostr.filters import Filter, parse_filter
from relay.nostr.limits import Limits
from relay.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    decode_client_message,
    encode_closed,
    encode_notice,
    encode_ok,
)
from relay.nostr.verify import verify_signature

__all__ = [
    "Action",
    "Count",
    "Send",
    "Session",
    "Store",
    "Subscribe",
    "Unsubscribe",
    "check_event",
    "claimed_id",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Send these bytes as one text frame."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Store:
    """A verified event: store it (or broadcast it, if ephemeral), then answer OK."""

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


Action = Send | Store | Subscribe | Unsubscribe | Count

_lenient = msgspec.json.Decoder()


def claimed_id(raw: bytes) -> str | None:
    """The ``id`` a malformed event claims, so a rejection can still be an OK message."""
    try:
        obj = _lenient.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(obj, dict):
        claimed = obj.get("id")
        if isinstance(claimed, str) and 0 < len(claimed) <= 64:
            return claimed
    return None


def check_event(raw: bytes, limits: Limits, now: int) -> Event:
    """Every check the relay applies to a published event, in order, cheapest first.

    Shape and limits, time window and id (:func:`validate_event`), NIP-40 expiration, NIP-70
    protection, then the signature. Used for EVENT messages and by ``fitrelay import``.

    Raises:
        NostrError: the OK message that tells the client why.
    """
    event = decode_event(raw)
    validate_event(event, len(raw), limits, now)
    expires = expiration(event)
    if expires is not None and expires <= now:
        raise NostrError("invalid", "event has expired")
    if is_protected(event):
        raise NostrError(
            "restricted", "protected events (NIP-70) need AUTH, which this relay lacks"
        )
    if not verify_signature(event.id, event.pubkey, event.sig):
        raise NostrError("invalid", "bad signature")
    return event


def _rejected(raw: bytes, error: NostrError) -> Send:
    claimed = claimed_id(raw)
    if claimed is None:
        return Send(encode_notice(error.message))
    return Send(encode_ok(claimed, False, error.message))


class Session:
    """The protocol state of one connection: its open subscriptions and its limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.subscriptions: set[str] = set()

    def receive(self, text: str, now: int) -> list[Action]:
        """Handle one text frame received at unix time ``now``.

        (Invalid UTF-8 never gets here: the WebSocket layer closes with 1007, as RFC 6455
        requires.)
        """
        try:
            message = decode_client_message(text)
        except NostrError as exc:
            return [Send(encode_notice(exc.message))]
        if self._too_large(text):
            error = NostrError(
                "invalid", f"message is larger than {self.limits.max_message_bytes} bytes"
            )
            if isinstance(message, ClientEvent):
                return [_rejected(message.raw, error)]
            if isinstance(message, ClientReq | ClientCount):
                return [Send(encode_closed(message.sub_id, error.message))]
            return [Send(encode_notice(error.message))]
        if isinstance(message, ClientEvent):
            return [self._event(message.raw, now)]
        if isinstance(message, ClientReq):
            return [self._req(message)]
        if isinstance(message, ClientCount):
            return [self._count(message)]
        if isinstance(message, ClientClose):
            self.subscriptions.discard(message.sub_id)
            return [Unsubscribe(message.sub_id)]
        assert isinstance(message, ClientAuth)
        return [Send(encode_notice("unsupported: AUTH (NIP-42) is not supported by this relay"))]

    def _too_large(self, text: str) -> bool:
        limit = self.limits.max_message_bytes
        return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)

    def end(self, sub_id: str, message: str) -> Send:
        """The relay ends a subscription (query failed, timed out): forget it, say CLOSED."""
        self.subscriptions.discard(sub_id)
        return Send(encode_closed(sub_id, message))

    def _event(self, raw: bytes, now: int) -> Send | Store:
        try:
            event = check_event(raw, self.limits, now)
        except NostrError as exc:
            return _rejected(raw, exc)
        return Store(event, raw)

    def _filters(self, sub_id: str, raw_filters: list[object]) -> tuple[Filter, ...]:
        if not 0 < len(sub_id) <= self.limits.max_subid_length:
            raise NostrError(
                "invalid",
                f"subscription id must be 1 to {self.limits.max_subid_length} characters",
            )
        if not raw_filters:
            raise NostrError("invalid", "at least one filter is required")
        if len(raw_filters) > self.limits.max_filters:
            raise NostrError("invalid", f"more than {self.limits.max_filters} filters")
        return tuple(parse_filter(raw, self.limits) for raw in raw_filters)

    def _req(self, message: ClientReq) -> Send | Subscribe:
        sub_id = message.sub_id
        try:
            filters = self._filters(sub_id, message.filters)
            if (
                sub_id not in self.subscriptions
                and len(self.subscriptions) >= self.limits.max_subscriptions
            ):
                raise NostrError(
                    "rate-limited",
                    f"too many open subscriptions (at most {self.limits.max_subscriptions})",
                )
        except NostrError as exc:
            return Send(encode_closed(sub_id, exc.message))
        self.subscriptions.add(sub_id)
        return Subscribe(sub_id, filters)

    def _count(self, message: ClientCount) -> Send | Count:
        try:
            filters = self._filters(message.sub_id, message.filters)
        except NostrError as exc:
            return Send(encode_closed(message.sub_id, exc.message))
        return Count(message.sub_id, filters)
