"""Policy hooks, pure: rules refuse events and filters with their own prefix, in order."""

from __future__ import annotations

import msgspec

from relay.nostr.errors import NostrError
from relay.nostr.event import Event
from relay.nostr.filters import Filter
from relay.nostr.limits import Limits
from relay.nostr.policy import (
    DEFAULT_POLICIES,
    ConnInfo,
    Policies,
    refuse_auth_event,
    refuse_protected,
)
from relay.nostr.replies import Closed, Ok
from relay.nostr.session import Session, StoreEvent, Subscribe
from tests.signer import Keys

NOW = 1_750_000_000
ALICE, BOB = Keys(1), Keys(2)


def no_bob(conn: ConnInfo, event: Event, now: int) -> NostrError | None:
    return NostrError("blocked", "not bob") if event.pubkey == BOB.pubkey else None


def no_kind_7(conn: ConnInfo, event: Event, now: int) -> NostrError | None:
    return NostrError("restricted", "no reactions") if event.kind == 7 else None


def authors_only(conn: ConnInfo, filters: tuple[Filter, ...], now: int) -> NostrError | None:
    if any(f.authors is None for f in filters):
        return NostrError("restricted", "name the authors")
    return None


def _event(session: Session, event: dict[str, object]) -> object:
    [outcome] = session.receive(msgspec.json.encode(["EVENT", event]).decode(), NOW)
    return outcome


def test_event_rules_refuse_with_their_prefix_first_rule_first() -> None:
    session = Session(Limits(), Policies(reject_event=(no_bob, no_kind_7)))
    assert isinstance(_event(session, ALICE.sign(1, "hi", created_at=NOW)), StoreEvent)
    refused = _event(session, BOB.sign(7, "+", created_at=NOW))
    assert isinstance(refused, Ok) and not refused.accepted
    assert refused.error is not None and refused.error.message == "blocked: not bob"
    assert refused.kind == 7
    refused = _event(session, ALICE.sign(7, "+", created_at=NOW))
    assert isinstance(refused, Ok) and refused.prefix == "restricted"


def test_rules_see_the_connection() -> None:
    seen: list[ConnInfo] = []

    def record(conn: ConnInfo, event: Event, now: int) -> NostrError | None:
        seen.append(conn)
        return None

    session = Session(Limits(), Policies(reject_event=(record,)), conn_id=9, ip="192.0.2.1")
    _event(session, ALICE.sign(1, "hi", created_at=NOW))
    assert seen == [ConnInfo(9, "192.0.2.1")]


def test_filter_rules_refuse_req_and_count_with_closed() -> None:
    session = Session(Limits(), Policies(reject_filters=(authors_only,)))
    for verb in ("REQ", "COUNT"):
        [outcome] = session.receive(f'["{verb}", "s", {{"kinds": [1]}}]', NOW)
        assert isinstance(outcome, Closed)
        assert outcome.error.message == "restricted: name the authors"
    [outcome] = session.receive(f'["REQ", "s", {{"authors": ["{ALICE.pubkey}"]}}]', NOW)
    assert isinstance(outcome, Subscribe)
    assert session.subscriptions == {"s"}


def test_protected_events_need_their_authed_author() -> None:
    event = msgspec.json.decode(
        msgspec.json.encode(ALICE.sign(1, "mine", [["-"]], created_at=NOW)), type=Event
    )
    no_auth = refuse_protected(ConnInfo(), event, NOW)
    assert no_auth is not None and no_auth.prefix == "restricted"
    assert "does not offer" in no_auth.reason
    offered = ConnInfo(auth_offered=True)
    unauthed = refuse_protected(offered, event, NOW)
    assert unauthed is not None and unauthed.prefix == "auth-required"
    other = refuse_protected(
        ConnInfo(authed=frozenset({BOB.pubkey}), auth_offered=True), event, NOW
    )
    assert other is not None and other.prefix == "restricted"
    author = ConnInfo(authed=frozenset({BOB.pubkey, ALICE.pubkey}), auth_offered=True)
    assert refuse_protected(author, event, NOW) is None
    assert refuse_protected in DEFAULT_POLICIES.reject_event


def test_auth_events_are_never_published() -> None:
    session = Session(Limits())
    refused = _event(session, ALICE.sign(22242, "", [["challenge", "c"]], created_at=NOW))
    assert isinstance(refused, Ok) and refused.prefix == "invalid"
    assert refuse_auth_event in DEFAULT_POLICIES.reject_event


def test_policies_add_up() -> None:
    both = DEFAULT_POLICIES + Policies(
        reject_event=(no_bob,), limitation={"restricted_writes": True}
    )
    assert both.reject_event == (refuse_protected, refuse_auth_event, no_bob)
    assert dict(both.limitation) == {"restricted_writes": True}
