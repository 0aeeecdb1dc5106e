"""derive: dispatch by kind, and never raising whatever the tags hold."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import indexer.transform as transform
from indexer.model import Exercise, FitnessList, Issue, NonWorkout, Template, Workout
from indexer.transform import Outcome, derive
from relay.nostr.event import Event
from relay.nostr.kinds import FITNESS_KINDS

PK = "9947f9659dd80c3682402b612f5447e28249997fb3709500c32a585eb0977340"


def make(kind: int, tags: list[list[str]], content: str = "") -> Event:
    return Event(
        id="d" * 64,
        pubkey=PK,
        created_at=1740000000,
        kind=kind,
        tags=tags,
        content=content,
        sig="0" * 128,
    )


def test_fitness_kinds() -> None:
    assert frozenset({33401, 33402, 1301, 33403, 30003, 30004}) == FITNESS_KINDS


@pytest.mark.parametrize(
    ("kind", "tags", "row_type"),
    [
        (33401, [["d", "x"]], Exercise),
        (33402, [["d", "x"]], Template),
        (1301, [["exercise", "running"]], Workout),
        (1301, [["title", "hello"]], NonWorkout),
        (33403, [["d", "x"]], Workout),
        (30003, [["d", "x"], ["a", f"33401:{PK}:x"]], FitnessList),
        (30004, [["d", "x"], ["a", f"33402:{PK}:x"]], FitnessList),
    ],
)
def test_dispatch(kind: int, tags: list[list[str]], row_type: type) -> None:
    outcome = derive(make(kind, tags))
    assert isinstance(outcome, Outcome)
    assert isinstance(outcome.row, row_type)
    assert isinstance(outcome.issues, tuple)


def test_other_kinds_and_plain_lists_derive_nothing() -> None:
    assert derive(make(1, [["t", "fitness"]], "gm")) == Outcome(None, ())
    assert derive(make(30003, [["d", "x"], ["e", "a" * 64]])) == Outcome(None, ())


def test_parser_failure_becomes_an_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(event: Event) -> tuple[Exercise | None, list[Issue]]:
        raise ValueError("boom " + "x" * 1000)

    monkeypatch.setattr(transform, "parse_exercise", explode)
    outcome = derive(make(33401, [["d", "x"]]))
    assert outcome.row is None
    assert len(outcome.issues) == 1
    issue = outcome.issues[0]
    assert (issue.reason, issue.tag_index) == ("parser_error", None)
    assert issue.detail.startswith("ValueError: boom xxx")
    assert len(issue.detail) == 500


TAG_NAMES = [
    "d",
    "title",
    "name",
    "type",
    "format",
    "format_units",
    "equipment",
    "difficulty",
    "imeta",
    "t",
    "exercise",
    "template",
    "a",
    "start",
    "end",
    "completed",
    "duration",
    "interval",
    "rounds",
    "rounds_completed",
    "rest_between_sets",
    "rest_between_rounds",
    "pr",
    "client",
    "source",
    "distance",
    "avg_pace",
    "split",
    "split_pace",
    "elevation_gain",
    "elevation_loss",
    "calories",
    "steps",
    "avg_heart_rate",
    "max_heart_rate",
    "workout",
    "workout_start_time",
    "activity",
    "rcpt",
    "p",
    "description",
    "about",
    "category",
]
TRICKY = [
    "",
    " ",
    "0",
    "-1",
    "1.5",
    "1e400",
    "nan",
    "inf",
    "2147483648",
    "99999999999999999999999",
    "1750811660000",
    "00:28:15",
    "05:39",
    "00:75",
    "1:2:3:4",
    ":",
    "::",
    "normal",
    "warmup|normal|drop|failure",
    "enum",
    "km",
    "mi",
    "min/km",
    "min/mi",
    "lbs",
    "seconds",
    "running",
    "run",
    "true",
    "33401:",
    "33401:local:x",
    "33402::local:x",
    f"33401:{PK}:squat",
    f"33402:{PK}:day",
    f"33401:{PK}:squat,wss://r",
    f"33401:{PK}:squat::3:10:60",
    f"33401:{PK}:squat,1rm,100",
    "url https://a/b m video/mp4 dim 10x10 alt hi",
    "dim 99999999999x1",
    "weight",
    "reps",
    "set_type",
    "duration",
    "distance",
    "1" * 5000,
    "1" * 5000 + ":00",
    "0:" + "9" * 5000,
]
values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))
tags_strategy = st.lists(
    st.one_of(
        st.just([]),
        st.tuples(st.sampled_from(TAG_NAMES), st.lists(values, max_size=8)).map(
            lambda nv: [nv[0], *nv[1]]
        ),
        st.lists(st.text(max_size=6), max_size=4),
    ),
    max_size=14,
)
contents = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            '{"instructions": "x"}',
            '{"instructions": 3}',
            "[1, 2]",
            "{" * 5000,
            "From: a@b\nTo: c@d\nSubject: s\n\nbody",
        ]
    ),
)


@pytest.mark.parametrize("kind", sorted(FITNESS_KINDS))
@settings(max_examples=150, deadline=None)
@given(tags=tags_strategy, content=contents)
def test_derive_never_raises(kind: int, tags: list[list[str]], content: str) -> None:
    outcome = derive(make(kind, tags, content))
    assert all(i.reason != "parser_error" for i in outcome.issues), outcome.issues
    assert all(isinstance(i, Issue) and i.reason for i in outcome.issues)
    if kind == 33401:
        assert isinstance(outcome.row, Exercise)
    elif kind == 33402:
        assert isinstance(outcome.row, Template)
    elif kind == 33403:
        assert isinstance(outcome.row, Workout)
    elif kind == 1301:
        assert isinstance(outcome.row, Workout | NonWorkout)
        if isinstance(outcome.row, NonWorkout):
            assert outcome.issues == ()
    else:
        assert outcome.row is None or isinstance(outcome.row, FitnessList)
