"""Serialization, ids and signatures on every real event in the shared fixtures."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from relay.nostr.errors import NostrError
from relay.nostr.event import (
    KindClass,
    canonical_bytes,
    compute_id,
    d_tag,
    decode_event,
    expiration,
    is_protected,
    kind_class,
    validate_event,
)
from relay.nostr.limits import Limits
from relay.nostr.verify import verify_signature
from tests.fixtures import invalid_cases, valid_events, valid_lines
from tests.signer import Keys

VALID = valid_events()
INVALID = invalid_cases()
NO_WINDOW = Limits(created_at_future_seconds=0)


def _id_of(event: dict[str, Any]) -> str:
    tags = [] if event.get("tags") is None else event["tags"]
    serial = canonical_bytes(
        event.get("pubkey"), event.get("created_at"), event.get("kind"), tags, event.get("content")
    )
    return hashlib.sha256(serial).hexdigest()


def test_fixture_counts() -> None:
    assert len(VALID) == 104
    assert len(INVALID) == 41


@pytest.mark.parametrize("event", VALID, ids=[e["id"][:12] for e in VALID])
def test_every_valid_fixture_hashes_and_verifies(event: dict[str, Any]) -> None:
    assert _id_of(event) == event["id"]
    assert verify_signature(event["id"], event["pubkey"], event["sig"])


def test_valid_fixtures_pass_the_relay_checks_except_the_ones_nip01_forbids() -> None:
    """Every valid line decodes and validates, except one with an integer inside a tag
    (NIP-01 tags are arrays of strings), which is refused with a precise reason."""
    refused = []
    for line in valid_lines():
        raw = line.encode()
        try:
            event = decode_event(raw)
            validate_event(event, len(raw), NO_WINDOW, now=0)
        except NostrError as exc:
            refused.append(exc.message)
    assert len(refused) == 1
    assert refused[0].startswith("invalid: malformed event: Expected `str`, got `int`")


def _invalid_reason(case: dict[str, Any]) -> str:
    """Why the relay refuses an invalid fixture: the message of the first failing check."""
    import msgspec

    raw = msgspec.json.encode(case["event"])
    try:
        event = decode_event(raw)
        validate_event(event, len(raw), NO_WINDOW, now=0)
    except NostrError as exc:
        return exc.message
    if not verify_signature(event.id, event.pubkey, event.sig):
        return "invalid: bad signature"
    return "accepted"


@pytest.mark.parametrize(
    "case", INVALID, ids=[f"{i}-{c['why'].replace(' ', '_')}" for i, c in enumerate(INVALID)]
)
def test_every_invalid_fixture_is_rejected_for_its_stated_reason(case: dict[str, Any]) -> None:
    reason = _invalid_reason(case)
    why = case["why"]
    if why.startswith("bad id"):
        # The id is checked before the signature, so a bad id is what the client hears.
        assert reason == "invalid: event id does not match the sha256 of its serialization"
    elif why == "bad sig":
        assert reason == "invalid: bad signature"
    elif why == "tags is null":
        assert reason.startswith("invalid: malformed event: Expected `array`, got `null`")
    elif why.startswith("missing field"):
        assert reason == "invalid: malformed event: Object missing required field `created_at`"
    elif why.startswith("malformed id"):
        assert reason == "invalid: id must be 64 lowercase hex characters"
    elif why == "malformed sig":
        assert reason == "invalid: sig must be 128 lowercase hex characters"
    elif why == "malformed pubkey":
        assert reason == "invalid: pubkey must be 64 lowercase hex characters"
    else:
        pytest.fail(f"unexpected fixture reason {why!r}")


def test_bad_id_with_signature_valid_over_the_recomputed_id_is_invalid() -> None:
    """The 'only the id was tampered' cases: the signature verifies over the true id."""
    cases = [c for c in INVALID if "signature is valid over the recomputed id" in c["detail"]]
    assert cases
    for case in cases:
        event = case["event"]
        assert verify_signature(_id_of(event), event["pubkey"], event["sig"])
        assert _invalid_reason(case).startswith("invalid: event id does not match")


def test_signature_over_another_id_is_refused() -> None:
    keys = Keys(1)
    a = keys.sign(1, "a")
    b = keys.sign(1, "b")
    assert not verify_signature(a["id"], a["pubkey"], b["sig"])


def test_pubkey_not_on_curve_is_not_valid() -> None:
    assert not verify_signature("00" * 32, "ff" * 32, "00" * 64)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        (0, KindClass.REPLACEABLE),
        (1, KindClass.REGULAR),
        (2, KindClass.REGULAR),
        (3, KindClass.REPLACEABLE),
        (1301, KindClass.REGULAR),
        (9999, KindClass.REGULAR),
        (10000, KindClass.REPLACEABLE),
        (19999, KindClass.REPLACEABLE),
        (20000, KindClass.EPHEMERAL),
        (29999, KindClass.EPHEMERAL),
        (30000, KindClass.ADDRESSABLE),
        (33401, KindClass.ADDRESSABLE),
        (39999, KindClass.ADDRESSABLE),
        (40000, KindClass.REGULAR),
        (65535, KindClass.REGULAR),
    ],
)
def test_kind_classes(kind: int, cls: KindClass) -> None:
    assert kind_class(kind) is cls


def test_tag_helpers() -> None:
    keys = Keys(2)
    raw = keys.sign(33401, "", [["d", "push-up"], ["d", "second"], ["expiration", "1700"], ["-"]])
    event = decode_event(__import__("msgspec").json.encode(raw))
    assert d_tag(event) == "push-up"
    assert expiration(event) == 1700
    assert is_protected(event)
    plain = decode_event(__import__("msgspec").json.encode(keys.sign(0, "{}", [])))
    assert d_tag(plain) == ""
    assert expiration(plain) is None
    assert not is_protected(plain)


def test_non_numeric_expiration_is_ignored() -> None:
    import msgspec

    event = decode_event(msgspec.json.encode(Keys(3).sign(1, "", [["expiration", "soon"]])))
    assert expiration(event) is None


def test_compute_id_matches_signer() -> None:
    import msgspec

    raw = Keys(4).sign(1, 'quote " backslash \\ newline \n tab \t nul \x00 é 🏋️')
    assert compute_id(decode_event(msgspec.json.encode(raw))) == raw["id"]
