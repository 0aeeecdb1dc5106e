"""Every fitness event (kinds 1301 and 33401) in the real signed fixtures, parsed exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from indexer.model import Address, Exercise, Hashtag, Issue, PerformedSet, Workout
from indexer.transform import derive
from relay.nostr.errors import NostrError
from relay.nostr.event import decode_event
from relay.nostr.kinds import FITNESS_KINDS
from tests.fixtures import invalid_cases, valid_events, valid_lines

POWR_DEV = "55127fc9e1c03c6b459a3bab72fdb99def1644c5f239bdd09f3e5fb401ed9b21"


def _by_id(event_id: str) -> Any:
    for line in valid_lines():
        if json.loads(line)["id"] == event_id:
            return derive(decode_event(line.encode()))
    raise AssertionError(f"{event_id} not in valid.jsonl")


def test_fixture_holds_exactly_these_fitness_events() -> None:
    ids = sorted(e["id"] for e in valid_events() if e["kind"] in (1301, 33401))
    assert ids == [
        "11d8b6c00b9eb8f5e956258407571c8179ecfa4994c91fae0f7987f614d1af16",
        "6be36ad8e40ff2e64008c31c3bc26394118a2b81719548afb8d658a0ab09184b",
        "8a305a82506185f7bd5e5d33bdc947c91a4d84758820bef7d6b768b74c0fdd92",
        "8b79bfa985e3b5e9dfbbddca3b8f5c96b16f52e514929f0d7631c6b952e37f70",
    ]


def test_real_33401_powr_rn_exercise() -> None:
    outcome = _by_id("8b79bfa985e3b5e9dfbbddca3b8f5c96b16f52e514929f0d7631c6b952e37f70")
    assert outcome.row == Exercise(
        pubkey=POWR_DEV,
        d="exercise-1742703804",
        event_id="8b79bfa985e3b5e9dfbbddca3b8f5c96b16f52e514929f0d7631c6b952e37f70",
        created_at=1742703805,
        title="Test 2",
        equipment="barbell",
        difficulty=None,
        format=("weight", "reps"),
        format_units=("kg", "count"),
        format_units_raw=("kg", "count"),
        instructions="Test 2",
        exercise_type="strength",
        category="Legs",
        hashtags=(Hashtag("test", "test"), Hashtag("powr", "powr")),
        media=(),
    )
    assert outcome.issues == ()


@pytest.mark.parametrize(
    ("event_id", "created_at", "d", "start", "end", "template_d", "set_ds"),
    [
        (
            "6be36ad8e40ff2e64008c31c3bc26394118a2b81719548afb8d658a0ab09184b",
            1742703619,
            "local:m8l4pktv-97r1n75ckvc",
            1742703570,
            1742703578,
            "local:m8l4p7sp-t3z81ndyajf",
            ("m8l4pktv-bbjg6yus28d", "m8l4pktv-iwdfkt232bi", "m8l4pktv-4bod5iu9i58"),
        ),
        (
            "8a305a82506185f7bd5e5d33bdc947c91a4d84758820bef7d6b768b74c0fdd92",
            1742702573,
            "local:m8l428e1-6kybxzrebyo",
            1742702481,
            1742702500,
            "local:m8l41ura-o0fg5ugtqs",
            ("m8l428e1-r7vkmeq1hj", "m8l428e1-7t47qg7eokh", "m8l428e1-3yedofspbpy"),
        ),
    ],
)
def test_real_1301_powr_rn_records(
    event_id: str,
    created_at: int,
    d: str,
    start: int,
    end: int,
    template_d: str,
    set_ds: tuple[str, str, str],
) -> None:
    outcome = _by_id(event_id)
    template_raw = f"33402::{template_d}"
    set_raws = [f"33401:local:{x}" for x in set_ds]
    assert outcome.row == Workout(
        event_id=event_id,
        kind=1301,
        pubkey=POWR_DEV,
        d=d,
        created_at=created_at,
        dialect="nip101e",
        title="Simple Strength Workout",
        workout_type="strength",
        activity="strength",
        activity_raw="strength",
        started_at=float(start),
        ended_at=float(end),
        start_raw=str(start),
        end_raw=str(end),
        duration_s=float(end - start),
        duration_raw=None,
        completed=True,
        rounds_completed=None,
        interval_s=None,
        template=Address(template_raw, 33402, None, template_d, None),
        notes="",
        client=None,
        source=None,
        hashtags=(),
        sets=tuple(
            PerformedSet(i, 7 + i, Address(raw, 33401, None, x), ("0", "8", "normal"), 1, False)
            for i, (raw, x) in enumerate(zip(set_raws, set_ds, strict=True))
        ),
    )
    assert outcome.issues == (
        Issue("malformed_coordinate", repr(template_raw), 6),
        *(Issue("malformed_coordinate", repr(raw), 7 + i) for i, raw in enumerate(set_raws)),
    )


def test_real_1301_powr_web_circuit() -> None:
    event_id = "11d8b6c00b9eb8f5e956258407571c8179ecfa4994c91fae0f7987f614d1af16"
    outcome = _by_id(event_id)
    pushups = Address("33401:test-pubkey:pushups", 33401, None, "pushups")
    squats = Address("33401:test-pubkey:squats", 33401, None, "squats")
    assert outcome.row == Workout(
        event_id=event_id,
        kind=1301,
        pubkey=POWR_DEV,
        d="2695edb9-41cf-484a-bd79-b341aa6d9bab",
        created_at=1750813460,
        dialect="nip101e",
        title="Test Circuit Workout",
        workout_type="circuit",
        activity="circuit",
        activity_raw="circuit",
        started_at=1750811660.0,
        ended_at=1750813460.0,
        start_raw="1750811660",
        end_raw="1750813460",
        duration_s=1800.0,
        duration_raw=None,
        completed=True,
        rounds_completed=None,
        interval_s=None,
        template=None,
        notes="Test workout for NDK cache validation. Push-ups and squats circuit.",
        client="workout-pwa",
        source=None,
        hashtags=(Hashtag("fitness", "fitness"), Hashtag("test", "test")),
        sets=(
            PerformedSet(0, 6, pushups, ("0", "10", "7", "normal"), 1, False),
            PerformedSet(1, 7, pushups, ("0", "8", "8", "normal"), 2, False),
            PerformedSet(2, 8, squats, ("0", "15", "6", "normal"), 1, False),
            PerformedSet(3, 9, squats, ("0", "12", "7", "normal"), 2, False),
        ),
    )
    assert [(i.reason, i.tag_index) for i in outcome.issues] == [
        ("malformed_coordinate", 6),
        ("malformed_coordinate", 7),
        ("malformed_coordinate", 8),
        ("malformed_coordinate", 9),
    ]


def test_every_valid_event_derives_without_parser_error() -> None:
    decoded = 0
    for line in valid_lines():
        try:
            event = decode_event(line.encode())
        except NostrError:
            continue  # e.g. a number among the tags: the relay never stores such an event
        decoded += 1
        outcome = derive(event)
        assert all(i.reason != "parser_error" for i in outcome.issues), event.id
        if event.kind not in FITNESS_KINDS:
            assert outcome.row is None and outcome.issues == ()
    assert decoded >= 100


def test_fabricated_fitness_events_from_invalid_fixtures_still_parse() -> None:
    """HealthNote-Relay's hand-written 1301/33401/33402 (bad signatures, odd shapes)."""
    rows = {}
    for case in invalid_cases():
        event = case["event"]
        if not isinstance(event, dict) or event.get("kind") not in (1301, 33401, 33402):
            continue
        outcome = derive(decode_event(json.dumps(event).encode()))
        assert all(i.reason != "parser_error" for i in outcome.issues)
        rows[event["id"]] = outcome.row
    bench = rows["16e95f8a23fa6cc3e60f1ec6dafbe8ff2a9815f40a48cb46962e4a2a84bfcc89"]
    assert isinstance(bench, Exercise)
    assert (bench.format, bench.format_units, bench.equipment) == (
        ("sets", "reps", "weight"),
        (None, None, "kg"),
        "barbell",
    )
    run = rows["9a7b5c3d1e8f2a0b4c6d8e9f2a3b5c7d9e8f2a1b3c5d7e9f2a4b6c8d0e2f4a6"]
    assert isinstance(run, Workout)
    # A real 64-hex coordinate makes it NIP-101e; its 7-element splits are not a known form.
    assert (run.dialect, len(run.sets), run.splits, run.duration_s) == ("nip101e", 1, (), 1800.0)
    assert run.sets[0].values_raw == ("5.04", "1800", "5:57")
