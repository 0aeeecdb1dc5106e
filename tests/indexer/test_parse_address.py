"""parse_address: lenient reading of ``kind:pubkey:d`` references (spec §6, §9.3)."""

from __future__ import annotations

import pytest

from indexer.address import address_issue, address_key, parse_address
from indexer.model import Address, Issue

PK = "9947f9659dd80c3682402b612f5447e28249997fb3709500c32a585eb0977340"


def test_well_formed_coordinate() -> None:
    value = f"33401:{PK}:bb-back-squat-template"
    assert parse_address(value, "wss://powr.me") == Address(
        raw=value, kind=33401, pubkey=PK, d="bb-back-squat-template", relay="wss://powr.me"
    )
    assert parse_address(value).resolvable


@pytest.mark.parametrize(
    ("value", "kind", "pubkey", "d"),
    [
        ("33401:m8l4pktv-bbjg6yus28d", 33401, None, "m8l4pktv-bbjg6yus28d"),
        ("33401:local:m8l4pktv-bbjg6yus28d", 33401, None, "m8l4pktv-bbjg6yus28d"),
        ("33402::local:m8l4p7sp-t3z81ndyajf", 33402, None, "local:m8l4p7sp-t3z81ndyajf"),
        (f"33401:{PK.upper()}:squat", 33401, None, "squat"),
        (f"33401:{PK[:-1]}:squat", 33401, None, "squat"),
        (f"33401:{PK}:", 33401, PK, ""),
        (f"33401:{PK}:a:b:c", 33401, PK, "a:b:c"),
        ("33401", 33401, None, None),
        ("33401:", 33401, None, None),
        ("", None, None, None),
        ("abc:def:ghi", None, None, "ghi"),
        ("-1:x:y", None, None, "y"),
        ("99999999:x:y", None, None, "y"),
        ("65536:x:y", None, None, "y"),
        ("٣٣٤٠١:x:y", None, None, "y"),
    ],
)
def test_malformed_parts(value: str, kind: int | None, pubkey: str | None, d: str | None) -> None:
    address = parse_address(value)
    assert (address.raw, address.kind, address.pubkey, address.d) == (value, kind, pubkey, d)
    assert address.relay is None


def test_resolvable_needs_all_three_parts() -> None:
    assert not parse_address("33401:m8l4pktv").resolvable
    assert not parse_address("33402::local:x").resolvable
    assert parse_address(f"33401:{PK}:").resolvable


def test_relay_hint_joined_with_comma() -> None:
    value = f"33402:{PK}:leg-day,wss://relay.one,wss://relay.two"
    assert parse_address(value) == Address(value, 33402, PK, "leg-day", "wss://relay.one")
    # The tag's own relay element wins over the joined hint.
    assert parse_address(value, "wss://tag.relay").relay == "wss://tag.relay"
    # An empty tag relay falls back to the joined hint.
    assert parse_address(value, "").relay == "wss://relay.one"
    assert parse_address(f"33402:{PK}:leg-day,").relay is None
    assert parse_address(f"33402:{PK}:leg-day, ,wss://r").relay == "wss://r"


def test_params_suffix_is_cut() -> None:
    value = f"33401:{PK}:squat::3:10:60"
    assert parse_address(value) == Address(value, 33401, PK, "squat", None)
    short = "33401:m8l4pktv::3:10:60"
    assert parse_address(short) == Address(short, 33401, None, "m8l4pktv", None)
    empty_pk = "33402::local:x::3"
    assert parse_address(empty_pk) == Address(empty_pk, 33402, None, "local:x", None)
    both = f"33401:{PK}:squat::3:10:60,wss://r"
    assert parse_address(both) == Address(both, 33401, PK, "squat", "wss://r")


def test_empty_or_blank_relay_is_none() -> None:
    assert parse_address(f"33401:{PK}:x", "").relay is None
    assert parse_address(f"33401:{PK}:x", "   ").relay is None
    assert parse_address(f"33401:{PK}:x", None).relay is None


def test_surrounding_whitespace_is_ignored_but_raw_kept() -> None:
    value = f"  33401:{PK}:squat "
    address = parse_address(value)
    assert (address.raw, address.kind, address.pubkey, address.d) == (value, 33401, PK, "squat")


def test_address_issue() -> None:
    good = parse_address(f"33401:{PK}:x")
    assert address_issue(good, 33401, 3) is None
    assert address_issue(good, 33402, 3) == Issue(
        "unexpected_kind", f"expected kind 33402: '33401:{PK}:x'", 3
    )
    bad = parse_address("33401:local:x")
    assert address_issue(bad, 33401, 7) == Issue("malformed_coordinate", "'33401:local:x'", 7)


def test_address_key() -> None:
    assert address_key(parse_address(f"33401:{PK}:x", "wss://a")) == (33401, PK, "x")
    assert address_key(parse_address(f"33401:{PK}:x,wss://b")) == (33401, PK, "x")
    assert address_key(parse_address("33401:test-pubkey:x ")) == "33401:test-pubkey:x"
