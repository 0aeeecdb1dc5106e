"""The session state machine, with no loop, socket or database."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from relay.nostr.event import decode_event
from relay.nostr.filters import Filter
from relay.nostr.limits import Limits
from relay.nostr.replies import IngestStatus, Reply, encode_reply
from relay.nostr.session import Count, Outcome, Session, StoreEvent, Subscribe, Unsubscribe
from tests.signer import Keys

NOW = 1_750_000_000


def frames(outcomes: list[Outcome]) -> list[list[Any]]:
    out = []
    for outcome in outcomes:
        assert isinstance(outcome, Reply), outcome
        out.append(msgspec.json.decode(encode_reply(outcome)))
    return out


def one(session: Session, message: object, now: int = NOW) -> list[Any]:
    text = message if isinstance(message, str) else msgspec.json.encode(message).decode()
    replies = frames(session.receive(text, now))
    assert len(replies) == 1
    return replies[0]


@pytest.fixture
def session() -> Session:
    return Session(Limits())


def test_valid_event_becomes_store(session: Session) -> None:
    event = Keys(1).sign(1, "hi", created_at=NOW)
    [action] = session.receive(msgspec.json.encode(["EVENT", event]).decode(), NOW)
    assert isinstance(action, StoreEvent)
    assert action.event.id == event["id"]
    assert msgspec.json.decode(action.raw) == event


def test_raw_event_is_kept_byte_for_byte(session: Session) -> None:
    event = Keys(1).sign(1, "spaced", created_at=NOW)
    raw = msgspec.json.format(msgspec.json.encode(event), indent=2).decode()
    [action] = session.receive(f'[ "EVENT" ,\n{raw} ]', NOW)
    assert isinstance(action, StoreEvent)
    assert action.raw.decode() == raw


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.update(content="tampered"), "invalid: event id does not match"),
        (lambda e: e.update(sig="00" * 64), "invalid: bad signature"),
        (lambda e: e.update(sig=e["sig"].upper()), "invalid: sig must be 128 lowercase hex"),
        (lambda e: e.update(kind=70000), "invalid: kind must be between 0 and 65535"),
        (lambda e: e.update(kind=-1), "invalid: kind must be between 0 and 65535"),
        (lambda e: e.update(created_at=-5), "invalid: created_at must be a non-negative"),
        (lambda e: e.update(created_at=10**30), "invalid: created_at must be a non-negative"),
        (lambda e: e.update(created_at="1"), "invalid: malformed event: Expected `int`"),
        (lambda e: e.update(created_at=1.5), "invalid: malformed event: Expected `int`"),
        (lambda e: e.update(tags=[["e", 5]]), "invalid: malformed event: Expected `str`"),
        (lambda e: e.update(tags=None), "invalid: malformed event: Expected `array`"),
        (lambda e: e.update(tags=[[[[["deep"]]]]]), "invalid: malformed event: Expected `str`"),
        (lambda e: e.pop("sig"), "invalid: malformed event: Object missing required field"),
        (lambda e: e.update(pubkey="abc"), "invalid: pubkey must be 64 lowercase hex"),
    ],
)
def test_bad_events_get_ok_false(session: Session, mutate: Any, reason: str) -> None:
    event = Keys(1).sign(1, "hi", created_at=NOW)
    mutate(event)
    reply = one(session, ["EVENT", event])
    assert reply[:3] == ["OK", event["id"], False]
    assert reply[3].startswith(reason), reply[3]


def test_event_without_usable_id_gets_notice(session: Session) -> None:
    assert one(session, ["EVENT", {"kind": 1}])[0] == "NOTICE"
    assert one(session, ["EVENT", "not an object"])[0] == "NOTICE"


def test_created_at_window(session: Session) -> None:
    keys = Keys(1)
    future = keys.sign(1, "f", created_at=NOW + 901)
    reply = one(session, ["EVENT", future])
    assert reply[2:] == [False, "invalid: created_at is more than 900 seconds in the future"]
    [action] = session.receive(
        msgspec.json.encode(["EVENT", keys.sign(1, "ok", created_at=NOW + 900)]).decode(), NOW
    )
    assert isinstance(action, StoreEvent)
    old = keys.sign(1, "old", created_at=1)
    assert isinstance(
        session.receive(msgspec.json.encode(["EVENT", old]).decode(), NOW)[0], StoreEvent
    )
    strict = Session(Limits(created_at_past_seconds=3600))
    reply = one(strict, ["EVENT", old])
    assert reply[3] == "invalid: created_at is more than 3600 seconds in the past"


def test_expired_event_is_rejected(session: Session) -> None:
    event = Keys(1).sign(1, "x", [["expiration", str(NOW - 1)]], created_at=NOW - 10)
    assert one(session, ["EVENT", event])[2:] == [False, "invalid: event has expired"]
    fresh = Keys(1).sign(1, "x", [["expiration", str(NOW + 60)]], created_at=NOW - 10)
    [action] = session.receive(msgspec.json.encode(["EVENT", fresh]).decode(), NOW)
    assert isinstance(action, StoreEvent)


def test_protected_event_is_restricted(session: Session) -> None:
    event = Keys(1).sign(1, "x", [["-"]], created_at=NOW)
    reply = one(session, ["EVENT", event])
    assert reply[2] is False
    assert reply[3].startswith("restricted: ")


def test_event_limits() -> None:
    limits = Limits(max_event_tags=2, max_content_bytes=10, max_tag_value_bytes=5)
    session = Session(limits)
    keys = Keys(1)
    cases = [
        (keys.sign(1, "", [["t", "a"]] * 3, created_at=NOW), "more than 2 tags"),
        (keys.sign(1, "é" * 6, created_at=NOW), "content is longer than 10 bytes"),
        (keys.sign(1, "", [["t", "abcdef"]], created_at=NOW), "tag value is longer than 5"),
    ]
    for event, fragment in cases:
        reply = one(session, ["EVENT", event])
        assert reply[2] is False and fragment in reply[3], reply


def test_event_byte_limit() -> None:
    session = Session(Limits(max_event_bytes=300))
    event = Keys(1).sign(1, "x" * 100, created_at=NOW)
    reply = one(session, ["EVENT", event])
    assert reply[2:] == [False, "invalid: event is larger than 300 bytes"]


def test_message_byte_limit() -> None:
    session = Session(Limits(max_message_bytes=200))
    event = Keys(1).sign(1, "x" * 300, created_at=NOW)
    assert one(session, ["EVENT", event]) == [
        "OK",
        event["id"],
        False,
        "invalid: message is larger than 200 bytes",
    ]
    reply = one(session, ["REQ", "s", {"#t": ["x" * 300]}])
    assert reply == ["CLOSED", "s", "invalid: message is larger than 200 bytes"]
    assert one(session, ["CLOSE", "y" * 300])[0] == "NOTICE"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{}",
        "[]",
        "[1]",
        '["EVENT"]',
        '["EVENT", {}, {}]',
        '["REQ"]',
        '["REQ", 5, {}]',
        '["CLOSE"]',
        '["CLOSE", 1]',
        '["HELLO", 1]',
        '["EVENT", {"id": "x"',
        "[" * 10_000 + "]" * 10_000,
        '["REQ", "s", ' + "[" * 5_000 + "]" * 5_000 + "]",
        "[1e999999]",
        '"\\ud800"',
    ],
)
def test_garbage_gets_a_notice(session: Session, text: str) -> None:
    reply = one(session, text)
    assert reply[0] in ("NOTICE", "CLOSED"), reply
    assert reply[-1].startswith("invalid: "), reply


def test_req_and_close(session: Session) -> None:
    [action] = session.receive('["REQ", "s1", {"kinds": [1]}, {"authors": []}]', NOW)
    assert action == Subscribe("s1", (Filter(kinds=frozenset({1})), Filter(authors=frozenset())))
    assert session.subscriptions == {"s1"}
    assert session.receive('["CLOSE", "s1"]', NOW) == [Unsubscribe("s1")]
    assert session.subscriptions == set()


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (["REQ", "", {}], "invalid: subscription id must be 1 to 64 characters"),
        (["REQ", "x" * 65, {}], "invalid: subscription id must be 1 to 64 characters"),
        (["REQ", "s"], "invalid: at least one filter is required"),
        (["REQ", "s", {}] + [{}] * 20, "invalid: more than 20 filters"),
        (["REQ", "s", {"ids": ["abc"]}], "invalid: filter field 'ids' must hold 64 lowercase"),
        (["REQ", "s", {"authors": "x"}], "invalid: filter field 'authors' must be an array"),
        (["REQ", "s", {"kinds": ["1"]}], "invalid: filter field 'kinds' must be an integer"),
        (["REQ", "s", {"kinds": [True]}], "invalid: filter field 'kinds' must be an integer"),
        (["REQ", "s", {"kinds": [65536]}], "invalid: filter field 'kinds' must be between"),
        (["REQ", "s", {"since": -1}], "invalid: filter field 'since' must be between"),
        (["REQ", "s", {"until": 10**40}], "invalid: filter field 'until' must be between"),
        (["REQ", "s", {"limit": 1.5}], "invalid: filter field 'limit' must be an integer"),
        (["REQ", "s", {"#t": [1]}], "invalid: filter field '#t' must hold strings"),
        (["REQ", "s", {"#t": ["x"] * 1001}], "invalid: filter field '#t' has more than 1000"),
        (["REQ", "s", 5], "invalid: a filter must be a JSON object"),
        (["REQ", "s", {"search": "squat"}], "unsupported: search (NIP-50) is not offered"),
        (["REQ", "s", {"xsearch": "squat"}], "unsupported: filter field 'xsearch'"),
        (["REQ", "s", {"#exercise": ["x"]}], "unsupported: tag filter '#exercise'"),
        (["COUNT", "c", {"kinds": "1"}], "invalid: filter field 'kinds' must be an array"),
    ],
)
def test_bad_req_gets_closed(session: Session, message: list[Any], reason: str) -> None:
    reply = one(session, message)
    assert reply[0] == "CLOSED"
    assert reply[1] == message[1]
    assert reply[2].startswith(reason), reply[2]
    assert session.subscriptions == set()


def test_subscription_limit_and_replacement() -> None:
    session = Session(Limits(max_subscriptions=2))
    assert isinstance(session.receive('["REQ", "a", {}]', NOW)[0], Subscribe)
    assert isinstance(session.receive('["REQ", "b", {}]', NOW)[0], Subscribe)
    # Reusing an open id replaces it rather than counting as a third.
    assert isinstance(session.receive('["REQ", "a", {"kinds": [1]}]', NOW)[0], Subscribe)
    reply = one(session, ["REQ", "c", {}])
    assert reply == ["CLOSED", "c", "rate-limited: too many open subscriptions (at most 2)"]
    session.receive('["CLOSE", "a"]', NOW)
    assert isinstance(session.receive('["REQ", "c", {}]', NOW)[0], Subscribe)


def test_queries_in_flight_are_capped_across_req_and_count() -> None:
    """D1: REQ stored queries and COUNTs share one cap; past it the answer is CLOSED
    rate-limited and no action is returned, so the shell starts no work."""
    session = Session(Limits(max_queries_in_flight=2))
    assert isinstance(session.receive('["REQ", "a", {}]', NOW)[0], Subscribe)
    assert isinstance(session.receive('["COUNT", "c1", {}]', NOW)[0], Count)
    cap = "rate-limited: too many queries in flight (at most 2); wait for EOSE or COUNT"
    assert one(session, ["COUNT", "c2", {}]) == ["CLOSED", "c2", cap]
    assert one(session, ["REQ", "b", {}]) == ["CLOSED", "b", cap]
    assert session.subscriptions == {"a"}  # the refused REQ opened nothing
    session.query_finished()
    assert isinstance(session.receive('["REQ", "b", {}]', NOW)[0], Subscribe)
    session.query_finished()
    session.query_finished()
    assert session.queries == 0
    busy = session.query_busy("b")
    assert msgspec.json.decode(encode_reply(busy)) == [
        "CLOSED",
        "b",
        "error: relay busy, try again",
    ]
    assert session.subscriptions == {"a"}


def test_limit_is_capped(session: Session) -> None:
    [action] = session.receive('["REQ", "s", {"limit": 999999}]', NOW)
    assert isinstance(action, Subscribe)
    assert action.filters[0].limit == Limits().max_limit


def test_count(session: Session) -> None:
    [action] = session.receive('["COUNT", "c", {"kinds": [1]}, {"#t": ["run"]}]', NOW)
    assert action == Count(
        "c", (Filter(kinds=frozenset({1})), Filter(tags=(("t", frozenset({"run"})),)))
    )


def test_a_failed_query_forgets_the_subscription(session: Session) -> None:
    session.receive('["REQ", "s", {}]', NOW)
    closed = session.query_failed("s", timed_out=True)
    assert msgspec.json.decode(encode_reply(closed)) == [
        "CLOSED",
        "s",
        "error: query took too long; narrow the filter",
    ]
    assert session.subscriptions == set()
    session.receive('["REQ", "t", {}]', NOW)
    assert msgspec.json.decode(encode_reply(session.query_failed("t", timed_out=False))) == [
        "CLOSED",
        "t",
        "error: could not run the query",
    ]


def test_later_outcomes_are_typed_replies(session: Session) -> None:
    """What the shell reports back (commits, failures, counts) becomes replies here, with
    the fields the shell counts by: no frame is read back."""
    event = decode_event(msgspec.json.encode(Keys(1).sign(7, "+", created_at=NOW)))
    stored = session.stored(event, IngestStatus.STORED)
    assert (stored.accepted, stored.error, stored.kind, stored.stored) == (True, None, 7, True)
    duplicate = session.stored(event, IngestStatus.DUPLICATE)
    assert duplicate.accepted and duplicate.prefix == "duplicate" and not duplicate.stored
    deleted = session.stored(event, IngestStatus.DELETED)
    assert not deleted.accepted and deleted.prefix == "blocked"
    assert msgspec.json.decode(encode_reply(session.store_failed(event))) == [
        "OK",
        event.id,
        False,
        "error: could not store the event; try again",
    ]
    assert encode_reply(session.counted("c", 3)) == b'["COUNT","c",{"count":3}]'
    assert session.binary().error.message == "invalid: binary frames are not supported"


def test_the_verb_of_each_message_is_known(session: Session) -> None:
    session.receive('["CLOSE", "x"]', NOW)
    assert session.verb == "CLOSE"
    session.receive("not json", NOW)
    assert session.verb == "invalid"
    session.receive('["COUNT", "c", {}]', NOW)
    assert session.verb == "COUNT"


def test_auth_is_answered(session: Session) -> None:
    reply = one(session, ["AUTH", {"kind": 22242}])
    assert reply[0] == "NOTICE" and reply[1].startswith("unsupported: ")


@pytest.mark.parametrize(
    "spelling",
    [
        ',"content":"B"}',  # compact
        ' , "content" : "B" }',  # with whitespace
        ',"cont\\u0065nt":"B"}',  # the same key, escaped
        ',"extra":{"a":1,"a":2}}',  # deeper, in a field the relay ignores
    ],
)
def test_an_event_with_a_repeated_key_is_refused(session: Session, spelling: str) -> None:
    event = Keys(1).sign(1, "A", created_at=NOW)
    text = msgspec.json.encode(event).decode()[:-1] + spelling
    [outcome] = session.receive(f'["EVENT",{text}]', NOW)
    assert isinstance(outcome, Reply) and not isinstance(outcome, StoreEvent)
    reply = msgspec.json.decode(encode_reply(outcome))
    assert reply[:3] == ["OK", event["id"], False]
    assert reply[3] == "invalid: malformed event: a key appears twice in one object"


def test_an_event_with_extra_fields_and_no_repeats_is_accepted(session: Session) -> None:
    event = Keys(1).sign(1, "A", created_at=NOW)
    text = msgspec.json.encode({**event, "extra": {"a": 1, "b": [{"c": 2}]}}).decode()
    [outcome] = session.receive(f'["EVENT",{text}]', NOW)
    assert isinstance(outcome, StoreEvent)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        '["REQ","s",' + "[" * 1000 + "]" * 1000 + "]",
        '["EVENT",' + '{"a":' * 1000 + "1" + "}" * 1000 + "]",
        '["COUNT","c",{"kinds":' + "[" * 1000 + "]" * 1000 + "}]",
    ],
)
def test_deep_nesting_gets_a_notice(session: Session, text: str) -> None:
    [outcome] = session.receive(text, NOW)
    reply = msgspec.json.decode(encode_reply(outcome))  # type: ignore[arg-type]
    assert reply[0] == "NOTICE" and reply[1].startswith("invalid: ")
