"""NIP-42 in the session, pure: the challenge, the checks of an AUTH event, the authed set."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from relay.nostr.auth import AuthSettings, normalise_url
from relay.nostr.limits import Limits
from relay.nostr.policy import DEFAULT_POLICIES, ConnInfo
from relay.nostr.replies import AuthChallenge, Notice, Ok, encode_reply
from relay.nostr.session import MAX_AUTHED, Session, StoreEvent
from tests.signer import Keys

NOW = 1_750_000_000
URL = "wss://relay.example.com"
ALICE, BOB = Keys(1), Keys(2)


def auth_event(
    keys: Keys,
    challenge: str = "c1",
    relay: str = URL,
    created_at: int = NOW,
    kind: int = 22242,
) -> dict[str, Any]:
    return keys.sign(kind, "", [["relay", relay], ["challenge", challenge]], created_at=created_at)


def session(window: int = 600) -> Session:
    return Session(Limits(), DEFAULT_POLICIES, auth=AuthSettings.of(URL, window), challenge="c1")


def answer(s: Session, event: object, now: int = NOW) -> Ok | Notice:
    [reply] = s.receive(msgspec.json.encode(["AUTH", event]).decode(), now)
    assert isinstance(reply, Ok | Notice)
    return reply


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("wss://relay.example.com", URL),
        ("WSS://Relay.Example.COM/", URL),
        ("wss://relay.example.com:443", URL),
        ("wss://relay.example.com:443//", URL),
        (" wss://relay.example.com ", URL),
        ("ws://relay.example.com:80/", "ws://relay.example.com"),
        ("ws://relay.example.com:443", "ws://relay.example.com:443"),
        ("wss://relay.example.com:7447/nostr/", "wss://relay.example.com:7447/nostr"),
        ("ws://[::1]:7447", "ws://[::1]:7447"),
        ("https://relay.example.com", ""),
        ("relay.example.com", ""),
        ("wss://", ""),
        ("wss://relay.example.com:99999", ""),
    ],
)
def test_urls_compare_in_one_spelling(url: str, normal: str) -> None:
    assert normalise_url(url) == normal


def test_the_challenge_is_sent_first_only_when_auth_is_offered() -> None:
    greeting = session().greeting()
    assert isinstance(greeting, AuthChallenge)
    assert msgspec.json.decode(encode_reply(greeting)) == ["AUTH", "c1"]
    assert session().conn.auth_offered
    plain = Session(Limits())
    assert plain.greeting() is None and not plain.conn.auth_offered
    reply = answer(plain, auth_event(ALICE))
    assert isinstance(reply, Notice) and reply.error.prefix == "unsupported"


def test_a_valid_answer_authenticates_and_several_keys_may() -> None:
    s = session()
    first = auth_event(ALICE, relay="WSS://relay.example.com/")
    reply = answer(s, first)
    assert isinstance(reply, Ok) and reply.accepted and reply.error is None
    assert reply.event_id == first["id"]
    assert s.conn.authed == {ALICE.pubkey}
    assert answer(s, auth_event(BOB, created_at=NOW - 599)).accepted  # type: ignore[union-attr]
    assert s.conn.authed == {ALICE.pubkey, BOB.pubkey}
    assert s.conn.conn_id == 0 and s.conn.auth_offered


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (auth_event(ALICE, challenge="other"), "challenge tag"),
        (ALICE.sign(22242, "", [["relay", URL]], created_at=NOW), "challenge tag"),
        (auth_event(ALICE, relay="wss://elsewhere.example.com"), "relay tag must name"),
        (auth_event(ALICE, relay="wss://relay.example.com:7447"), "relay tag must name"),
        (auth_event(ALICE, relay="ws://relay.example.com"), "relay tag must name"),
        (ALICE.sign(22242, "", [["challenge", "c1"]], created_at=NOW), "relay tag must name"),
        (auth_event(ALICE, created_at=NOW - 601), "600 seconds from now"),
        (auth_event(ALICE, created_at=NOW + 601), "600 seconds from now"),
        (auth_event(ALICE, kind=1), "kind 22242"),
    ],
)
def test_wrong_answers_are_refused_with_invalid(event: dict[str, Any], reason: str) -> None:
    s = session()
    reply = answer(s, event)
    assert isinstance(reply, Ok) and not reply.accepted
    assert reply.error is not None and reply.error.prefix == "invalid"
    assert reason in reply.error.reason
    assert s.conn.authed == frozenset()


def test_a_bad_signature_or_id_is_refused() -> None:
    s = session()
    forged = {**auth_event(ALICE), "sig": auth_event(BOB)["sig"]}
    reply = answer(s, forged)
    assert isinstance(reply, Ok) and reply.error is not None
    assert reply.error.message == "invalid: bad signature"
    tampered = {**auth_event(ALICE), "pubkey": BOB.pubkey}
    reply = answer(s, tampered)
    assert isinstance(reply, Ok) and reply.prefix == "invalid"
    reply = answer(s, "not an event")
    assert isinstance(reply, Notice) and reply.error.prefix == "invalid"
    assert s.conn.authed == frozenset()


def test_the_window_is_configurable() -> None:
    s = session(window=30)
    reply = answer(s, auth_event(ALICE, created_at=NOW - 31))
    assert isinstance(reply, Ok) and reply.error is not None
    assert "30 seconds" in reply.error.reason
    assert answer(s, auth_event(ALICE, created_at=NOW - 30)).accepted  # type: ignore[union-attr]


def test_a_connection_authenticates_as_a_bounded_number_of_keys() -> None:
    s = session()
    for seed in range(MAX_AUTHED):
        assert answer(s, auth_event(Keys(100 + seed))).accepted  # type: ignore[union-attr]
    reply = answer(s, auth_event(Keys(999)))
    assert isinstance(reply, Ok) and reply.prefix == "restricted"
    assert answer(s, auth_event(Keys(100))).accepted  # type: ignore[union-attr]
    assert len(s.conn.authed) == MAX_AUTHED


def test_protected_events_pass_once_their_author_is_authed() -> None:
    s = session()
    protected = ALICE.sign(1, "mine", [["-"]], created_at=NOW)
    text = msgspec.json.encode(["EVENT", protected]).decode()
    [refused] = s.receive(text, NOW)
    assert isinstance(refused, Ok) and refused.prefix == "auth-required"
    answer(s, auth_event(BOB))
    [refused] = s.receive(text, NOW)
    assert isinstance(refused, Ok) and refused.prefix == "restricted"
    answer(s, auth_event(ALICE))
    [stored] = s.receive(text, NOW)
    assert isinstance(stored, StoreEvent) and stored.event.id == protected["id"]


def test_rules_see_the_authed_set() -> None:
    s = session()
    answer(s, auth_event(ALICE))
    assert s.conn == ConnInfo(authed=frozenset({ALICE.pubkey}), auth_offered=True)
