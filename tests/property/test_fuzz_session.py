"""Fuzzing the client message decoder and the session: every frame, however malformed, is
answered per protocol (replies are OK, CLOSED, NOTICE, EOSE or COUNT frames, or actions for
the shell) and no exception escapes. Inputs are near-valid messages with mutated fields, not
only random text; found cases stay as explicit examples."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from relay.nostr.errors import NostrError
from relay.nostr.limits import Limits
from relay.nostr.messages import decode_client_message
from relay.nostr.reconciliation import LoadItems
from relay.nostr.replies import Reply, encode_reply
from relay.nostr.session import Count, Session, StoreEvent, Subscribe, Unsubscribe
from tests.signer import Keys

NOW = 1_750_000_000
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = Keys(7).sign(1, "fuzz seed", [["t", "x"]], created_at=NOW)
VERBS = ("EVENT", "REQ", "COUNT", "CLOSE", "AUTH", "NEG-OPEN", "NEG-MSG", "NEG-CLOSE")
VERBS += ("NOPE", "", "event")

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.just("\ud800"),
    st.lists(st.integers(), max_size=3),
    st.just([[[[[]]]]]),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _mutated_event(draw: st.DrawFn) -> Any:
    event: dict[str, Any] = dict(VALID)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*VALID, "extra"]))
        if draw(st.booleans()):
            event.pop(key, None)
        else:
            event[key] = draw(odd_values)
    return event


def _filter(draw: st.DrawFn) -> Any:
    keys = ["ids", "authors", "kinds", "since", "until", "limit", "#t", "#e", "search", "x"]
    return draw(st.dictionaries(st.sampled_from(keys), odd_values, max_size=4))


@st.composite
def frames(draw: st.DrawFn) -> str:
    verb = draw(st.sampled_from(VERBS))
    if verb == "EVENT":
        parts: list[Any] = [verb, _mutated_event(draw)]
    elif verb == "NEG-OPEN":
        parts = [
            verb,
            draw(odd_values),
            _filter(draw),
            draw(st.sampled_from(["61", "6100000200", "zz", "60"])),
        ]
    elif verb in ("REQ", "COUNT"):
        parts = [verb, draw(st.one_of(st.text(max_size=70), odd_values))]
        parts += [_filter(draw) for _ in range(draw(st.integers(0, 3)))]
    else:
        parts = [verb, *draw(st.lists(odd_values, max_size=3))]
    if draw(st.booleans()):
        parts = parts[: draw(st.integers(0, len(parts)))]
    text = json.dumps(parts, ensure_ascii=draw(st.booleans()))
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 text frame carries one raw
        text = json.dumps(parts)
    mutation = draw(st.sampled_from(["none", "dup", "cut", "nest", "float"]))
    if mutation == "dup" and '{"' in text:
        text = text.replace('{"', '{"kind": 1, "', 1)  # a duplicate key, or an extra one
    elif mutation == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif mutation == "nest":
        depth = draw(st.integers(1, 3000))
        text = "[" * depth + text + "]" * depth
    elif mutation == "float":
        text = text.replace(f"{NOW}", f"{NOW}.0")
    return text


def check_outcomes(outcomes: list[object]) -> None:
    assert isinstance(outcomes, list)
    for outcome in outcomes:
        if isinstance(outcome, Reply):
            frame = msgspec.json.decode(encode_reply(outcome))
            assert frame[0] in ("OK", "CLOSED", "NOTICE", "EOSE", "COUNT", "NEG-MSG", "NEG-ERR"), (
                frame
            )
        else:
            assert isinstance(outcome, StoreEvent | Subscribe | Unsubscribe | Count | LoadItems), (
                outcome
            )


@FUZZ
@given(frames())
@example("[" * 100_000)
@example('["EVENT",' + "[" * 5000 + "]" * 5000 + "]")
@example('["REQ","s",{"kinds":[1e400]}]')
@example('["REQ","s",{"limit":-1,"limit":99999999999999999999999}]')
@example('["REQ","s",{"#t":["\\ud800"]}]')
@example('["CLOSE"]')
@example("[]")
def test_every_frame_is_answered(text: str) -> None:
    try:
        decode_client_message(text)
    except NostrError as exc:
        assert exc.prefix
    session = Session(Limits())
    check_outcomes(session.receive(text, NOW))
    # The session stays usable: a valid message after the fuzzed one is still served.
    after = session.receive(json.dumps(["REQ", "after", {"kinds": [1]}]), NOW)
    assert any(isinstance(o, Subscribe) for o in after) or session.subscriptions


@FUZZ
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=200))
def test_random_text_is_answered(text: str) -> None:
    check_outcomes(Session(Limits()).receive(text, NOW))
