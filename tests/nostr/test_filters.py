"""The reference matcher."""

from __future__ import annotations

import msgspec

from relay.nostr.event import decode_event
from relay.nostr.filters import matches, matches_any, parse_filter
from relay.nostr.limits import Limits
from tests.signer import Keys

LIMITS = Limits()


def ev(**kw: object) -> object:
    keys = Keys(int(kw.pop("seed", 1)))
    return decode_event(msgspec.json.encode(keys.sign(**kw)))


def test_since_until_inclusive() -> None:
    event = ev(created_at=100)
    assert matches(parse_filter({"since": 100, "until": 100}, LIMITS), event)
    assert not matches(parse_filter({"since": 101}, LIMITS), event)
    assert not matches(parse_filter({"until": 99}, LIMITS), event)


def test_tag_letters_and_values() -> None:
    event = ev(tags=[["t", "run"], ["p", "x" * 64], ["t"], ["T", "Run"]])
    f = lambda d: parse_filter(d, LIMITS)  # noqa: E731
    assert matches(f({"#t": ["swim", "run"]}), event)
    assert matches(f({"#t": ["run"], "#p": ["x" * 64]}), event)
    assert not matches(f({"#t": ["run"], "#p": ["y" * 64]}), event)
    assert matches(f({"#T": ["Run"]}), event)
    assert not matches(f({"#T": ["run"]}), event)
    assert not matches(f({"#e": ["run"]}), event)
    assert not matches(f({"#t": []}), event)


def test_empty_lists_match_nothing_and_missing_fields_everything() -> None:
    event = ev(kind=1)
    assert matches(parse_filter({}, LIMITS), event)
    for key in ("ids", "authors", "kinds"):
        assert not matches(parse_filter({key: []}, LIMITS), event)


def test_ids_authors_kinds() -> None:
    keys = Keys(7)
    raw = keys.sign(kind=7, content="+")
    event = decode_event(msgspec.json.encode(raw))
    flt = parse_filter({"ids": [raw["id"]], "authors": [keys.pubkey], "kinds": [7]}, LIMITS)
    assert matches(flt, event)
    assert not matches(parse_filter({"kinds": [1]}, LIMITS), event)
    assert matches_any(
        [parse_filter({"kinds": [1]}, LIMITS), parse_filter({"kinds": [7]}, LIMITS)], event
    )
