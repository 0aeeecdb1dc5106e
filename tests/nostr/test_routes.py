"""The fetcher's pure core: which relays may be asked, in which order, for what, and when
an address is asked again."""

from __future__ import annotations

import random

import msgspec
import pytest

from relay.nostr.routes import (
    Address,
    UrlRules,
    address_filter,
    matches,
    retry_delay,
    routes,
    write_relays,
)

PUBKEY = "ab" * 32


@pytest.mark.parametrize(
    ("url", "public", "loopback"),
    [
        ("wss://relay.example/", "wss://relay.example", "wss://relay.example"),
        (
            "WSS://Relay.Example:443/nostr/",
            "wss://relay.example:443/nostr",
            "wss://relay.example:443/nostr",
        ),
        ("ws://127.0.0.1:7000", None, "ws://127.0.0.1:7000"),
        ("ws://[::1]:7000", None, "ws://[::1]:7000"),
        ("ws://10.1.2.3", None, "ws://10.1.2.3"),
        ("ws://192.168.0.9", None, "ws://192.168.0.9"),
        ("ws://169.254.169.254", None, "ws://169.254.169.254"),
        ("ws://localhost:8080", None, "ws://localhost:8080"),
        ("ws://printer.local", None, "ws://printer.local"),
        ("ws://intranet", None, "ws://intranet"),
        ("https://relay.example", None, None),
        ("wss://user:pw@relay.example", None, None),
        ("wss://relay.example:99999", None, None),
        ("", None, None),
    ],
)
def test_which_urls_may_be_dialled(url: str, public: str | None, loopback: str | None) -> None:
    assert UrlRules().normalise(url) == public
    assert UrlRules(allow_loopback=True).normalise(url) == loopback


def test_routes_are_hints_then_relay_list_then_upstreams_each_once() -> None:
    found = routes(
        ["wss://hint.example/", "ws://127.0.0.1:1", "nonsense", "wss://list.example"],
        ["wss://list.example", "wss://up.example"],
        ["wss://up.example", "wss://other.example"],
        UrlRules(),
    )
    assert found == [
        "wss://hint.example",
        "wss://list.example",
        "wss://up.example",
        "wss://other.example",
    ]


def test_write_relays_of_a_relay_list() -> None:
    raw = msgspec.json.encode({"kind": 10002, "tags": [
        ["r", "wss://both.example"], ["r", "wss://write.example", "write"],
        ["r", "wss://read.example", "read"], ["p", PUBKEY], ["r"], ["r", 7],
    ]}).decode()  # fmt: skip
    assert write_relays(raw) == ["wss://both.example", "wss://write.example"]
    assert write_relays("not json") == []
    assert write_relays('{"tags": "x"}') == []


def test_an_address_is_asked_for_by_kind_author_and_d() -> None:
    address = Address(33401, PUBKEY, "squat")
    assert address.text == f"33401:{PUBKEY}:squat"
    assert address_filter(address) == {
        "kinds": [33401], "authors": [PUBKEY], "#d": ["squat"], "limit": 1,
    }  # fmt: skip
    event = {"kind": 33401, "pubkey": PUBKEY, "tags": [["title", "x"], ["d", "squat"]]}
    assert matches(event, address)
    assert not matches(dict(event, kind=33402), address)
    assert not matches(dict(event, pubkey="cd" * 32), address)
    assert not matches(dict(event, tags=[["d", "bench"], ["d", "squat"]]), address)
    assert not matches(dict(event, tags=[]), address)
    assert matches(dict(event, tags=[]), Address(33401, PUBKEY, ""))
    assert not matches([event], address)


def test_retry_delays_grow_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    for attempts, low, high in [(1, 5, 10), (2, 10, 20), (3, 20, 40), (9, 50, 100)]:
        delays = [retry_delay(attempts, 10.0, 100.0, rng) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert max(delays) - min(delays) > (high - low) / 2
