"""The negentropy codec: known encodings, and reconciliations of random sets that must find
exactly the difference, with and without frame size limits."""

from __future__ import annotations

import hashlib
import random

import pytest

from relay.nostr.negentropy import (
    INFINITY,
    Items,
    NegentropyError,
    decode_varint,
    encode_varint,
    fingerprint,
    initiate,
    reconcile,
    respond,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8100"),
        (255, "817f"),
        (16_383, "ff7f"),
        (16_384, "818000"),
        (INFINITY, "81ffffffffffffffff7f"),
    ],
)
def test_varints(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded) + b"\x99", 0) == (value, len(encoded) // 2)


def test_varint_cut_short() -> None:
    with pytest.raises(NegentropyError):
        decode_varint(b"\x81\x80", 0)


def test_fingerprint_is_the_hash_of_the_little_endian_sum_and_the_count() -> None:
    ids = [bytes([i]) * 32 for i in (1, 2, 255)]
    total = 0
    for event_id in ids:
        total = (total + int.from_bytes(event_id, "little")) % 2**256
    expected = hashlib.sha256(total.to_bytes(32, "little") + b"\x03").digest()[:16]
    assert fingerprint(sum(int.from_bytes(i, "little") for i in ids), 3) == expected
    items = Items((7, event_id) for event_id in ids)
    assert items.fingerprint(0, 3) == expected
    # The sum wraps at 2**256: 0xff..ff + 0x01 is zero.
    wrap = Items([(1, b"\xff" * 32), (2, b"\x01" + b"\0" * 31)])
    assert wrap.fingerprint(0, 2) == hashlib.sha256(b"\0" * 32 + b"\x02").digest()[:16]


def test_initial_message_of_an_empty_set() -> None:
    # Version, bound at infinity (timestamp 0, no prefix), IdList mode, no ids.
    assert initiate(Items([])).hex() == "6100000200"


def test_initial_message_of_a_few_items_lists_them() -> None:
    ids = [bytes([i]) * 32 for i in range(3)]
    message = initiate(Items([(10, ids[2]), (5, ids[0]), (5, ids[1])]))
    assert message == bytes.fromhex("6100000203") + b"".join(ids)


def test_large_sets_are_split_into_sixteen_fingerprints() -> None:
    items = Items((1_000 + i, bytes([i]) * 32) for i in range(64))
    message = initiate(items)
    # Version, then 16 ranges of 4 items, each a bound, mode 1 and 16 bytes. The first bound
    # is timestamp 1004 (1 + 1004 from zero, a two-byte varint) with no prefix, the next ones
    # 4 seconds on (1 + 4), the last one infinity.
    assert message[:4] == bytes([0x61]) + encode_varint(1_005) + b"\x00"
    assert message[4] == 1
    assert message[21:24] == bytes([5, 0, 1])
    assert message[-19:-16] == bytes([0, 0, 1])
    assert len(message) == 1 + (2 + 1 + 1 + 16) + 15 * (1 + 1 + 1 + 16)
    assert message[5:21] == items.fingerprint(0, 4)


def test_other_protocol_versions_get_the_version_byte() -> None:
    assert respond(Items([]), b"\x62\x00\x00\x00") == b"\x61"
    with pytest.raises(NegentropyError):
        respond(Items([]), b"\x10")
    with pytest.raises(NegentropyError):
        respond(Items([]), b"\x61\x00\x00\x07")  # no such mode
    with pytest.raises(NegentropyError):
        respond(Items([]), b"\x61\x00\x21")  # prefix longer than an id


def _sync(
    mine: Items, theirs: Items, client_frame: int, relay_frame: int
) -> tuple[set[bytes], set[bytes], int]:
    have: set[bytes] = set()
    need: set[bytes] = set()
    message: bytes | None = initiate(mine, client_frame)
    rounds = 0
    while message is not None:
        rounds += 1
        assert rounds < 100
        answer = respond(theirs, message, relay_frame)
        if relay_frame:
            assert len(answer) <= relay_frame
        message, found_have, found_need = reconcile(mine, answer, client_frame)
        if client_frame and message is not None:
            assert len(message) <= client_frame
        have.update(found_have)
        need.update(found_need)
    return have, need, rounds


@pytest.mark.parametrize("seed", range(40))
def test_random_sets_reconcile_exactly(seed: int) -> None:
    rng = random.Random(seed)

    def item() -> tuple[int, bytes]:
        # Few distinct timestamps, so that bounds need id prefixes too.
        return rng.randrange(50), rng.randbytes(32)

    shared = [item() for _ in range(rng.randrange(0, 2_000))]
    only_mine = [item() for _ in range(rng.randrange(0, 200))]
    only_theirs = [item() for _ in range(rng.randrange(0, 200))]
    frames = rng.choice([(0, 0), (4_096, 0), (0, 4_096), (5_000, 8_000)])
    have, need, _ = _sync(Items(shared + only_mine), Items(shared + only_theirs), *frames)
    assert have == {event_id for _, event_id in only_mine}
    assert need == {event_id for _, event_id in only_theirs}


def test_ids_that_share_long_prefixes() -> None:
    base = bytes(31)
    mine = Items([(1, base + bytes([i])) for i in range(0, 200, 2)])
    theirs = Items([(1, base + bytes([i])) for i in range(0, 200, 3)])
    have, need, _ = _sync(mine, theirs, 0, 0)
    assert have == {base + bytes([i]) for i in range(0, 200, 2) if i % 3}
    assert need == {base + bytes([i]) for i in range(0, 200, 3) if i % 2}


def test_equal_sets_finish_in_one_round() -> None:
    rng = random.Random(7)
    items = [(rng.randrange(10**9), rng.randbytes(32)) for _ in range(5_000)]
    assert _sync(Items(items), Items(items), 0, 0) == (set(), set(), 1)
