"""Kind 33401: the spec's examples §3 A-D parsed into exact rows."""

from __future__ import annotations

from indexer.exercise import normalise_format_units, parse_exercise, parse_imeta
from indexer.model import Exercise, Hashtag, Issue, Media
from relay.nostr.event import Event

AUTHOR = "55127fc9e1c03c6b459a3bab72fdb99def1644c5f239bdd09f3e5fb401ed9b21"
EVENT_ID = "e" * 64


def exercise_event(tags: list[list[str]], content: str = "", pubkey: str = AUTHOR) -> Event:
    return Event(
        id=EVENT_ID,
        pubkey=pubkey,
        created_at=1740000000,
        kind=33401,
        tags=tags,
        content=content,
        sig="0" * 128,
    )


DEADLIFT_TEXT = (
    "Stand with feet hip-width apart, barbell over midfoot. Hinge at hips, grip bar outside"
    " knees. …"
)


def test_spec_3a_v1_deadlift() -> None:
    event = exercise_event(
        [
            ["d", "bb-deadlift-template"],
            ["title", "Barbell Deadlift"],
            ["format", "weight", "reps", "rpe", "set_type"],
            ["format_units", "kg", "count", "0-10", "warmup|normal|drop|failure"],
            ["equipment", "barbell"],
            ["difficulty", "intermediate"],
            [
                "imeta",
                "url https://powr.me/exercises/deadlift-demo.mp4",
                "m video/mp4",
                "dim 1920x1080",
                "alt Demonstration of proper barbell deadlift form",
            ],
            ["t", "compound"],
            ["t", "legs"],
            ["t", "posterior"],
        ],
        DEADLIFT_TEXT,
    )
    assert parse_exercise(event) == (
        Exercise(
            pubkey=AUTHOR,
            d="bb-deadlift-template",
            event_id=EVENT_ID,
            created_at=1740000000,
            title="Barbell Deadlift",
            equipment="barbell",
            difficulty="intermediate",
            format=("weight", "reps", "rpe", "set_type"),
            format_units=("kg", "count", "0-10", "enum"),
            format_units_raw=("kg", "count", "0-10", "warmup|normal|drop|failure"),
            instructions=DEADLIFT_TEXT,
            exercise_type=None,
            category=None,
            hashtags=(
                Hashtag("compound", "compound"),
                Hashtag("legs", "legs"),
                Hashtag("posterior", "posterior"),
            ),
            media=(
                Media(
                    url="https://powr.me/exercises/deadlift-demo.mp4",
                    mime_type="video/mp4",
                    width=1920,
                    height=1080,
                    alt="Demonstration of proper barbell deadlift form",
                    raw="url https://powr.me/exercises/deadlift-demo.mp4;m video/mp4;"
                    "dim 1920x1080;alt Demonstration of proper barbell deadlift form",
                ),
            ),
        ),
        [],
    )


def test_spec_3b_nak_push_up_packed_imeta() -> None:
    imeta = "url https://youtu.be/WDIpL0pjun0 m video/mp4 purpose demonstration context exercise"
    event = exercise_event(
        [
            ["d", "push-up"],
            ["title", "Push-up"],
            ["format", "weight", "reps", "rpe", "set_type"],
            ["format_units", "kg", "count", "0-10", "enum"],
            ["equipment", "bodyweight"],
            ["difficulty", "beginner"],
            ["t", "chest"],
            ["t", "push"],
            ["t", "fitness"],
            ["imeta", imeta],
        ],
        "<instructions>",
    )
    assert parse_exercise(event) == (
        Exercise(
            pubkey=AUTHOR,
            d="push-up",
            event_id=EVENT_ID,
            created_at=1740000000,
            title="Push-up",
            equipment="bodyweight",
            difficulty="beginner",
            format=("weight", "reps", "rpe", "set_type"),
            format_units=("kg", "count", "0-10", "enum"),
            format_units_raw=("kg", "count", "0-10", "enum"),
            instructions="<instructions>",
            exercise_type=None,
            category=None,
            hashtags=(
                Hashtag("chest", "chest"),
                Hashtag("push", "push"),
                Hashtag("fitness", "fitness"),
            ),
            media=(
                Media(
                    url="https://youtu.be/WDIpL0pjun0",
                    mime_type="video/mp4",
                    width=None,
                    height=None,
                    alt=None,
                    raw=imeta,
                ),
            ),
        ),
        [],
    )


def test_spec_3c_plank_time_based() -> None:
    event = exercise_event(
        [
            ["d", "plank"],
            ["title", "Plank"],
            ["format", "weight", "duration", "rpe", "set_type"],
            ["format_units", "kg", "seconds", "0-10", "enum"],
            ["equipment", "bodyweight"],
            ["t", "core"],
        ],
        "<instructions>",
    )
    row, issues = parse_exercise(event)
    assert issues == []
    assert row == Exercise(
        pubkey=AUTHOR,
        d="plank",
        event_id=EVENT_ID,
        created_at=1740000000,
        title="Plank",
        equipment="bodyweight",
        difficulty=None,
        format=("weight", "duration", "rpe", "set_type"),
        format_units=("kg", "seconds", "0-10", "enum"),
        format_units_raw=("kg", "seconds", "0-10", "enum"),
        instructions="<instructions>",
        exercise_type=None,
        category=None,
        hashtags=(Hashtag("core", "core"),),
        media=(),
    )


def test_spec_3d_powr_rn_key_value_format_units() -> None:
    event = exercise_event(
        [
            ["d", "<local id>"],
            ["title", "Squat"],
            ["type", "strength"],
            ["category", "Legs"],
            ["equipment", "barbell"],
            ["t", "legs"],
            ["format", "weight", "reps", "rpe", "set_type"],
            [
                "format_units",
                "weight",
                "kg",
                "reps",
                "count",
                "rpe",
                "0-10",
                "set_type",
                "warmup|normal|drop|failure",
            ],
        ],
        "<description>",
    )
    assert parse_exercise(event) == (
        Exercise(
            pubkey=AUTHOR,
            d="<local id>",
            event_id=EVENT_ID,
            created_at=1740000000,
            title="Squat",
            equipment="barbell",
            difficulty=None,
            format=("weight", "reps", "rpe", "set_type"),
            format_units=("kg", "count", "0-10", "enum"),
            format_units_raw=(
                "weight",
                "kg",
                "reps",
                "count",
                "rpe",
                "0-10",
                "set_type",
                "warmup|normal|drop|failure",
            ),
            instructions="<description>",
            exercise_type="strength",
            category="Legs",
            hashtags=(Hashtag("legs", "legs"),),
            media=(),
        ),
        [],
    )


def test_missing_required_tags_still_index() -> None:
    row, issues = parse_exercise(exercise_event([["t", "x"]], "just text"))
    assert row is not None
    assert (row.d, row.title, row.format, row.format_units, row.equipment) == (
        "",
        None,
        (),
        (),
        None,
    )
    assert [i.reason for i in issues] == [
        "missing_d",
        "missing_title",
        "missing_format",
        "missing_format_units",
        "missing_equipment",
    ]


def test_title_falls_back_to_name_and_equipment_empty() -> None:
    row, _ = parse_exercise(exercise_event([["d", "x"], ["name", "Row"], ["equipment", ""]]))
    assert row is not None
    assert (row.title, row.equipment) == ("Row", None)


def test_format_units_length_mismatch() -> None:
    event = exercise_event(
        [
            ["d", "x"],
            ["title", "X"],
            ["format", "Weight", "Reps", "RPE"],
            ["format_units", "KG", "count"],
            ["equipment", "Barbell"],
        ]
    )
    row, issues = parse_exercise(event)
    assert row is not None
    assert (row.format, row.format_units, row.equipment) == (
        ("weight", "reps", "rpe"),
        ("kg", "count", None),
        "barbell",
    )
    assert issues == [Issue("format_units_length", "format has 3 entries, format_units 2", 3)]


def test_normalise_format_units_forms() -> None:
    fmt = ("weight", "reps", "set_type")
    assert normalise_format_units(fmt, ("kg", "", "drop|normal|warmup|failure")) == (
        ("kg", None, "enum"),
        None,
    )
    # key/value pairs in another order than the format are matched by key
    assert normalise_format_units(fmt, ("reps", "count", "weight", "lbs", "set_type", "enum")) == (
        ("lbs", "count", "enum"),
        None,
    )
    # twice as long but not key/value: positional, extra dropped, noted
    units, note = normalise_format_units(fmt, ("kg", "count", "enum", "a", "b", "c"))
    assert units == ("kg", "count", "enum")
    assert note == "format has 3 entries, format_units 6"
    assert normalise_format_units((), ("kg",)) == ((), None)


def test_json_content_instructions() -> None:
    row, _ = parse_exercise(exercise_event([["d", "x"]], '{"instructions":"Brace, then pull."}'))
    assert row is not None and row.instructions == "Brace, then pull."
    other = '{"description":"no instructions here"}'
    row, _ = parse_exercise(exercise_event([["d", "x"]], other))
    assert row is not None and row.instructions == other
    broken = '{"instructions": '
    row, _ = parse_exercise(exercise_event([["d", "x"]], broken))
    assert row is not None and row.instructions == broken
    not_text = '{"instructions": ["a", "b"]}'
    row, _ = parse_exercise(exercise_event([["d", "x"]], not_text))
    assert row is not None and row.instructions == not_text


def test_imeta_forms() -> None:
    assert parse_imeta(["url https://a/b.gif", "m image/gif", "dim 640X480", "alt A b c"]) == Media(
        "https://a/b.gif",
        "image/gif",
        640,
        480,
        "A b c",
        "url https://a/b.gif;m image/gif;dim 640X480;alt A b c",
    )
    packed = "url https://a/b.mp4 dim 1280x720 alt Side view of the lift"
    assert parse_imeta([packed]) == Media(
        "https://a/b.mp4", None, 1280, 720, "Side view of the lift", packed
    )
    assert parse_imeta(["dim huge", "m video/mp4"]) == Media(
        None, "video/mp4", None, None, None, "dim huge;m video/mp4"
    )
    assert parse_imeta([]) == Media(None, None, None, None, None, "")


def test_imeta_without_url_is_noted() -> None:
    row, issues = parse_exercise(
        exercise_event([["d", "x"], ["title", "X"], ["imeta", "m video/mp4"]])
    )
    assert row is not None and len(row.media) == 1
    assert Issue("imeta_without_url", "imeta has no url", 2) in issues
