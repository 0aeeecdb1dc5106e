"""One client connection as a state machine: frames in, typed outcomes out.

The asyncio shell (:mod:`relay.server.connection`) feeds every text frame to
:meth:`Session.receive` with the current time and carries out the returned outcomes in order:
replies (:mod:`relay.nostr.replies`) it encodes and sends, actions (store, subscribe,
unsubscribe, count) it performs. What happens later (a commit, a failed query) is turned into
a reply by the session's other methods, so every :class:`~relay.nostr.errors.NostrError`
becomes an OK, CLOSED or NOTICE here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import msgspec

from relay.nostr.auth import AUTH_KIND, AuthSettings, verify_auth
from relay.nostr.errors import NostrError
from relay.nostr.event import (
    Event,
    decode_event,
    expiration,
    refuse_duplicate_keys,
    validate_event,
)
from relay.nostr.filters import DEFAULT_RULES, Filter, FilterRules, parse_filter
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
from relay.nostr.policy import DEFAULT_POLICIES, ConnInfo, Policies, ShadowRejected
from relay.nostr.reconciliation import LoadItems, Reconciliations
from relay.nostr.replies import (
    AuthChallenge,
    Closed,
    Counted,
    IngestStatus,
    NegErr,
    Notice,
    Ok,
    Reply,
)
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
_BUSY = NostrError("error", "relay busy, try again")
_BINARY = NostrError("invalid", "binary frames are not supported")
_NO_AUTH = NostrError("unsupported", "AUTH (NIP-42) is not offered by this relay")
MAX_AUTHED = 16
"""Most pubkeys one connection may authenticate as."""


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
        auth: AuthSettings | None = None,
        challenge: str = "",
        rules: FilterRules = DEFAULT_RULES,
    ) -> None:
        self.limits = limits
        self.rules = rules
        """Which multi-letter tags and whether ``search`` filters are answered."""
        self.policies = policies
        self.auth = auth if auth is not None and challenge else None
        """How AUTH is checked here; None when it is not offered."""
        self.challenge = challenge
        """This connection's NIP-42 challenge (random, from the shell)."""
        self.conn = ConnInfo(conn_id, ip, auth_offered=self.auth is not None)
        """What policy rules see of this connection; AUTH adds pubkeys to it."""
        self.subscriptions: set[str] = set()
        self.queries = 0
        """Stored queries (REQ's stored events, COUNT) started and not yet finished; the
        shell calls :meth:`query_finished` once for each Subscribe and Count."""
        self.verb = "invalid"
        """The type of the message last received (``invalid`` when it had none)."""
        self.negentropy = Reconciliations(limits, replace(rules, search_kinds=None))
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
        if self.policies.throttle and isinstance(message, ClientEvent | ClientReq | ClientCount):
            limited = self.policies.check_rate(self.conn, message.verb)
            if limited is not None:
                if isinstance(message, ClientEvent):
                    return [_rejected(message.raw, limited)]
                return [Closed(message.sub_id, limited)]
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
        return [self._auth(message.raw, now)]

    def greeting(self) -> AuthChallenge | None:
        """What to send as the connection opens: the AUTH challenge, when AUTH is offered."""
        return AuthChallenge(self.challenge) if self.auth is not None else None

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
        """A rule in front of the writer refused ``event`` (a shadow refusal looks like
        acceptance to the client)."""
        if isinstance(error, ShadowRejected):
            return Ok(event.id, True, None, event.kind)
        return Ok(event.id, False, error, event.kind)

    def store_failed(self, event: Event) -> Ok:
        """The batch holding ``event`` did not commit (database away, shutting down)."""
        return Ok(event.id, False, _STORE_FAILED, event.kind)

    def query_failed(self, sub_id: str, *, timed_out: bool) -> Closed:
        """The relay ends a subscription whose stored query failed: forget it, say CLOSED."""
        self.subscriptions.discard(sub_id)
        return Closed(sub_id, _QUERY_SLOW if timed_out else _QUERY_FAILED)

    def query_finished(self) -> None:
        """A Subscribe's stored query or a Count ended (answered, failed or cancelled)."""
        self.queries -= 1

    def query_busy(self, sub_id: str) -> Closed:
        """No pooled connection came free in time for a REQ: forget it, say CLOSED."""
        self.subscriptions.discard(sub_id)
        return Closed(sub_id, _BUSY)

    def count_busy(self, sub_id: str) -> Closed:
        return Closed(sub_id, _BUSY)

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

    def _auth(self, raw: bytes, now: int) -> Reply:
        """NIP-42: a valid answer to this connection's challenge adds its pubkey to the
        connection's authenticated set (a connection may hold several)."""
        if self.auth is None:
            return Notice(_NO_AUTH)
        try:
            event = verify_auth(raw, self.challenge, self.auth, self.limits, now)
        except NostrError as exc:
            return _rejected(raw, exc)
        authed = self.conn.authed
        if event.pubkey not in authed and len(authed) >= MAX_AUTHED:
            error = NostrError("restricted", f"at most {MAX_AUTHED} pubkeys per connection")
            return Ok(event.id, False, error, AUTH_KIND)
        self.conn = replace(self.conn, authed=authed | {event.pubkey})
        return Ok(event.id, True, None, AUTH_KIND)

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
        filters = tuple(parse_filter(raw, self.limits, self.rules) for raw in raw_filters)
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
            self._start_query()
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
            self._start_query()
        except NostrError as exc:
            return Closed(message.sub_id, exc)
        return Count(message.sub_id, filters)

    def _start_query(self) -> None:
        """Count one more stored query in flight, or refuse it when the connection has
        ``max_queries_in_flight`` running already."""
        if self.queries >= self.limits.max_queries_in_flight:
            raise NostrError(
                "rate-limited",
                f"too many queries in flight (at most {self.limits.max_queries_in_flight});"
                " wait for EOSE or COUNT",
            )
        self.queries += 1
