"""The configured rules, pure: kinds, pubkeys, AUTH for writes and reads, proof of work."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from relay.nostr.errors import NostrError
from relay.nostr.event import Event
from relay.nostr.filters import Filter
from relay.nostr.kinds import FITNESS_PRESET
from relay.nostr.policy import ConnInfo
from relay.nostr.rules import Rules, committed_target, difficulty, kind_ranges
from tests.signer import Keys

NOW = 1_750_000_000
ALICE, BOB = Keys(1), Keys(2)
NOBODY = ConnInfo(auth_offered=True)
AS_ALICE = ConnInfo(authed=frozenset({ALICE.pubkey}), auth_offered=True)


def event(keys: Keys = ALICE, kind: int = 1, tags: list[list[str]] | None = None) -> Event:
    return msgspec.convert(keys.sign(kind, "x", tags, created_at=NOW), Event)


def mine(keys: Keys, bits: int, target: int | None = None, kind: int = 1) -> dict[str, Any]:
    """An event whose id has at least ``bits`` leading zero bits (NIP-13)."""
    nonce = 0
    while True:
        tag = ["nonce", str(nonce)] + ([str(target)] if target is not None else [])
        signed = keys.sign(kind, "work", [tag], created_at=NOW)
        if difficulty(signed["id"]) >= bits:
            return signed
        nonce += 1


def refusal(rules: Rules, e: Event, conn: ConnInfo = NOBODY) -> str | None:
    error = rules.refuse_event(conn, e, NOW)
    return error.message if error is not None else None


def test_difficulty_counts_leading_zero_bits() -> None:
    assert difficulty("f" + "0" * 63) == 0
    assert difficulty("7" + "f" * 63) == 1
    assert difficulty("00" + "f" * 62) == 8
    assert difficulty("000" + "1" + "f" * 60) == 15
    assert difficulty("0" * 64) == 256


def test_the_committed_target_is_read_from_the_nonce_tag() -> None:
    assert committed_target(event(tags=[["nonce", "1", "20"]])) == 20
    assert committed_target(event(tags=[["nonce", "1"]])) is None
    assert committed_target(event(tags=[["nonce", "1", "lots"]])) is None
    assert committed_target(event()) is None


def test_an_empty_rule_set_is_open_and_installs_no_hooks() -> None:
    policies = Rules().policies()
    assert policies.reject_event == () and policies.reject_filters == ()
    assert policies.retention == ()
    assert dict(policies.limitation) == {
        "auth_required": False,
        "restricted_writes": False,
        "min_pow_difficulty": 0,
    }


def test_deny_lists_block_and_win_over_allow_lists() -> None:
    rules = Rules(
        kinds_allow=frozenset({1, 7}),
        kinds_deny=frozenset({7}),
        pubkeys_allow=frozenset({ALICE.pubkey, BOB.pubkey}),
        pubkeys_deny=frozenset({BOB.pubkey}),
    )
    assert refusal(rules, event()) is None
    assert refusal(rules, event(kind=7)) == "blocked: kind 7 is not accepted by this relay"
    assert refusal(rules, event(BOB)) == "blocked: this pubkey may not publish here"
    assert refusal(rules, event(kind=30023)) == (
        "restricted: kind 30023 is not accepted by this relay"
    )
    outsider = refusal(rules, event(Keys(3)))
    assert outsider is not None and outsider.startswith("restricted: ")


def test_the_fitness_preset() -> None:
    assert {0, 1, 3, 5, 7, 1111, 10002, 1301, 33401, 33402, 33403, 30003, 30004} <= FITNESS_PRESET
    assert 22242 not in FITNESS_PRESET
    rules = Rules(kinds_allow=FITNESS_PRESET)
    assert refusal(rules, event(kind=1301)) is None
    assert refusal(rules, event(kind=4)) == "restricted: kind 4 is not accepted by this relay"
    [retention] = rules.policies().retention
    assert retention["time"] == 0
    kinds = retention["kinds"]
    assert isinstance(kinds, list)
    never = {
        k
        for item in kinds
        for k in (range(item[0], item[1] + 1) if isinstance(item, list) else [item])
    }
    assert never == set(range(65_536)) - FITNESS_PRESET


def test_kind_ranges() -> None:
    assert kind_ranges([5, 1, 2, 3, 9, 10]) == [[1, 3], 5, [9, 10]]
    assert kind_ranges([]) == []


def test_writes_need_the_author_authed() -> None:
    rules = Rules(auth_writes=True)
    assert refusal(rules, event()) == "auth-required: authenticate (NIP-42) to publish this event"
    assert refusal(rules, event(), AS_ALICE) is None
    other = refusal(rules, event(BOB), AS_ALICE)
    assert other is not None and other.startswith("restricted: ")
    assert rules.policies().reject_filters == ()
    assert dict(rules.policies().limitation)["restricted_writes"] is True
    assert dict(rules.policies().limitation)["auth_required"] is False


def test_listed_kinds_need_auth_to_write_and_read() -> None:
    rules = Rules(auth_kinds=frozenset({1301}))
    assert refusal(rules, event(kind=1)) is None
    assert refusal(rules, event(kind=1301)) is not None
    assert refusal(rules, event(kind=1301), AS_ALICE) is None

    def read(conn: ConnInfo, *filters: Filter) -> NostrError | None:
        return rules.refuse_filters(conn, filters, NOW)

    assert read(NOBODY, Filter(kinds=frozenset({1, 33401}))) is None
    refused = read(NOBODY, Filter(kinds=frozenset({1})), Filter(kinds=frozenset({1301})))
    assert refused is not None and refused.message == (
        "auth-required: authenticate (NIP-42) to read kinds 1301"
    )
    assert read(NOBODY, Filter(authors=frozenset({ALICE.pubkey}))) is not None  # any kind
    assert read(AS_ALICE, Filter()) is None


def test_reads_need_auth_and_members_when_there_is_an_allow_list() -> None:
    rules = Rules(auth_reads=True)
    refused = rules.refuse_filters(NOBODY, (Filter(),), NOW)
    assert refused is not None and refused.prefix == "auth-required"
    assert rules.refuse_filters(AS_ALICE, (Filter(),), NOW) is None
    assert refusal(rules, event()) is None  # writes stay open
    assert dict(rules.policies().limitation)["auth_required"] is True
    private = Rules(auth_reads=True, pubkeys_allow=frozenset({BOB.pubkey}))
    refused = private.refuse_filters(AS_ALICE, (Filter(),), NOW)
    assert refused is not None and refused.prefix == "restricted"


def test_proof_of_work() -> None:
    rules = Rules(min_pow_difficulty=8)
    assert dict(rules.policies().limitation)["min_pow_difficulty"] == 8
    weak = next(e for e in (event(tags=[["n", str(i)]]) for i in range(64)) if difficulty(e.id) < 8)
    message = refusal(rules, weak)
    assert message is not None and message.startswith("pow: difficulty ")
    worked = msgspec.convert(mine(ALICE, 8, target=8), Event)
    assert refusal(rules, worked) is None
    assert refusal(Rules(min_pow_difficulty=difficulty(worked.id) + 1), worked) is not None


@pytest.mark.parametrize("target", [4, 7])
def test_a_nonce_committing_to_less_work_is_refused(target: int) -> None:
    lucky = msgspec.convert(mine(ALICE, 8, target=target), Event)
    message = refusal(Rules(min_pow_difficulty=8), lucky)
    assert message == f"pow: the nonce tag commits to difficulty {target}; 8 is required"
