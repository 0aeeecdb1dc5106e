"""Relay message encoding: stored JSON is spliced into EVENT messages unchanged."""

from __future__ import annotations

import msgspec

from relay.nostr.messages import encode_event, encode_events
from tests.signer import Keys


def test_an_answer_is_the_event_messages_one_by_one() -> None:
    keys = Keys(5)
    raws = [
        msgspec.json.encode(keys.sign(1, "plain")).decode(),
        msgspec.json.encode(
            keys.sign(1, 'quote " backslash \\ ünïcode 🏃', [["t", "run"]])
        ).decode(),
        '{"id": "spaces kept as stored"}',
    ]
    sub = 'feed "1" ✓'
    answer = encode_events(sub, raws)
    assert answer == [encode_event(sub, raw.encode()) for raw in raws]
    for message, raw in zip(answer, raws, strict=True):
        assert msgspec.json.decode(message) == ["EVENT", sub, msgspec.json.decode(raw)]
        assert raw.encode() in message  # byte for byte, not re-serialised
    assert encode_events(sub, []) == []
