"""Kind 33402: the spec's examples §4 A-D parsed into exact rows."""

from __future__ import annotations

from indexer.model import Address, Hashtag, Issue, PrescribedSet, Template
from indexer.sets import map_set
from indexer.template import parse_template
from relay.nostr.event import Event

AUTHOR = "9947f9659dd80c3682402b612f5447e28249997fb3709500c32a585eb0977340"
EVENT_ID = "f" * 64
SQUAT = f"33401:{AUTHOR}:bb-back-squat-template"
DEADLIFT = f"33401:{AUTHOR}:bb-deadlift-template"


def template_event(tags: list[list[str]], content: str = "") -> Event:
    return Event(
        id=EVENT_ID,
        pubkey=AUTHOR,
        created_at=1740000000,
        kind=33402,
        tags=tags,
        content=content,
        sig="0" * 128,
    )


EMOM_NOTES = (
    "20 minute EMOM alternating between squats and deadlifts every 30 seconds. Scale weight"
    " as needed to complete all reps within each interval."
)


def test_spec_4a_v1_emom() -> None:
    event = template_event(
        [
            ["d", "lower-body-emom-template"],
            ["title", "20min Squat/Deadlift EMOM"],
            ["type", "emom"],
            ["duration", "1200"],
            ["rounds", "20"],
            ["interval", "30"],
            ["exercise", SQUAT, "wss://powr.me", "", "5", "7", "normal"],
            ["exercise", DEADLIFT, "wss://powr.me", "", "4", "7", "normal"],
            ["t", "conditioning"],
            ["t", "legs"],
        ],
        EMOM_NOTES,
    )
    assert parse_template(event) == (
        Template(
            pubkey=AUTHOR,
            d="lower-body-emom-template",
            event_id=EVENT_ID,
            created_at=1740000000,
            title="20min Squat/Deadlift EMOM",
            template_type="emom",
            rounds=20.0,
            duration_s=1200.0,
            interval_s=30.0,
            rest_between_rounds_s=None,
            rest_between_sets_s=None,
            difficulty=None,
            notes=EMOM_NOTES,
            client=None,
            hashtags=(Hashtag("conditioning", "conditioning"), Hashtag("legs", "legs")),
            sets=(
                PrescribedSet(
                    position=0,
                    tag_index=6,
                    exercise=Address(
                        SQUAT, 33401, AUTHOR, "bb-back-squat-template", "wss://powr.me"
                    ),
                    values_raw=("", "5", "7", "normal"),
                    set_number=1,
                    set_number_given=False,
                    group_number=1,
                ),
                PrescribedSet(
                    position=1,
                    tag_index=7,
                    exercise=Address(
                        DEADLIFT, 33401, AUTHOR, "bb-deadlift-template", "wss://powr.me"
                    ),
                    values_raw=("", "4", "7", "normal"),
                    set_number=1,
                    set_number_given=False,
                    group_number=1,
                ),
            ),
        ),
        [],
    )
    # The empty weight is left for the user; the rest maps in the default order.
    values = map_set(("", "5", "7", "normal"))
    assert (values.weight_kg, values.weight_raw, values.reps, values.rpe, values.set_type) == (
        None,
        "",
        5.0,
        7.0,
        "normal",
    )


def test_spec_4b_v4_superset() -> None:
    bench = "33401:<pubkey>:<UUID-bench-press>"
    row_ = "33401:<pubkey>:<UUID-barbell-row>"
    content = "Upper body superset … rest 2-3 minutes before next round."
    event = template_event(
        [
            ["d", "<UUID-superset-template>"],
            ["title", "Bench Press / Barbell Row Superset"],
            ["type", "superset"],
            ["rest_between_sets", "180"],
            ["exercise", bench, "<relay-url>", "80", "8", "7", "normal", "1"],
            ["exercise", row_, "<relay-url>", "70", "8", "7", "normal", "1"],
            ["exercise", bench, "<relay-url>", "80", "8", "7", "normal", "2"],
            ["exercise", row_, "<relay-url>", "70", "8", "7", "normal", "2"],
            ["t", "strength"],
            ["t", "superset"],
        ],
        content,
    )
    bench_address = Address(bench, 33401, None, "<UUID-bench-press>", "<relay-url>")
    row_address = Address(row_, 33401, None, "<UUID-barbell-row>", "<relay-url>")
    row, issues = parse_template(event)
    assert row == Template(
        pubkey=AUTHOR,
        d="<UUID-superset-template>",
        event_id=EVENT_ID,
        created_at=1740000000,
        title="Bench Press / Barbell Row Superset",
        template_type="superset",
        rounds=None,
        duration_s=None,
        interval_s=None,
        rest_between_rounds_s=None,
        rest_between_sets_s=180.0,
        difficulty=None,
        notes=content,
        client=None,
        hashtags=(Hashtag("strength", "strength"), Hashtag("superset", "superset")),
        sets=(
            PrescribedSet(0, 4, bench_address, ("80", "8", "7", "normal"), 1, True, 1),
            PrescribedSet(1, 5, row_address, ("70", "8", "7", "normal"), 1, True, 1),
            PrescribedSet(2, 6, bench_address, ("80", "8", "7", "normal"), 2, True, 2),
            PrescribedSet(3, 7, row_address, ("70", "8", "7", "normal"), 2, True, 2),
        ),
    )
    # The placeholder pubkey is not 64 hex: every set reference is noted, none dropped.
    assert issues == [
        Issue("malformed_coordinate", repr(bench), 4),
        Issue("malformed_coordinate", repr(row_), 5),
        Issue("malformed_coordinate", repr(bench), 6),
        Issue("malformed_coordinate", repr(row_), 7),
    ]


def test_spec_4c_powr_web_nak_template() -> None:
    content = (
        "Upper body push exercises for strength building - corrected NIP-101e format with set"
        " numbers"
    )
    coord = "33401:<pk>:pushup-standard"
    event = template_event(
        [
            ["d", "push-workout-bodyweight"],
            ["title", "POWR Test Push Workout"],
            ["type", "strength"],
            ["exercise", coord, "", "0", "10", "7", "normal", "1"],
            ["exercise", coord, "", "0", "10", "7", "normal", "2"],
            ["exercise", coord, "", "0", "10", "7", "normal", "3"],
            ["duration", "1800"],
            ["difficulty", "intermediate"],
            ["t", "fitness"],
            ["client", "workout-pwa"],
        ],
        content,
    )
    address = Address(coord, 33401, None, "pushup-standard", None)
    row, issues = parse_template(event)
    assert row == Template(
        pubkey=AUTHOR,
        d="push-workout-bodyweight",
        event_id=EVENT_ID,
        created_at=1740000000,
        title="POWR Test Push Workout",
        template_type="strength",
        rounds=None,
        duration_s=1800.0,
        interval_s=None,
        rest_between_rounds_s=None,
        rest_between_sets_s=None,
        difficulty="intermediate",
        notes=content,
        client="workout-pwa",
        hashtags=(Hashtag("fitness", "fitness"),),
        sets=(
            PrescribedSet(0, 3, address, ("0", "10", "7", "normal"), 1, True, 1),
            PrescribedSet(1, 4, address, ("0", "10", "7", "normal"), 2, True, 2),
            PrescribedSet(2, 5, address, ("0", "10", "7", "normal"), 3, True, 3),
        ),
    )
    assert [i.reason for i in issues] == ["malformed_coordinate"] * 3


def test_spec_4d_powr_rn_template_without_pubkey() -> None:
    event = template_event(
        [
            ["d", "m8l4p7sp-t3z81ndyajf"],
            ["title", "Simple Strength Workout"],
            ["type", "strength"],
            ["exercise", "33401:<exerciseId>", "", "3", "10", "60"],
            ["exercise", "33401:<exerciseId>", "", "3", "10", "60"],
        ]
    )
    row, issues = parse_template(event)
    assert row is not None
    address = Address("33401:<exerciseId>", 33401, None, "<exerciseId>", None)
    assert row.sets == (
        PrescribedSet(0, 3, address, ("3", "10", "60"), 1, False, 1),
        PrescribedSet(1, 4, address, ("3", "10", "60"), 2, False, 2),
    )
    assert issues == [
        Issue("malformed_coordinate", "'33401:<exerciseId>'", 3),
        Issue("malformed_coordinate", "'33401:<exerciseId>'", 4),
    ]


def test_durations_in_clock_form_and_bad_numbers() -> None:
    event = template_event(
        [
            ["d", "x"],
            ["title", "T"],
            ["type", "AMRAP"],
            ["duration", "20:00"],
            ["rest_between_rounds", "1:30"],
            ["rounds", "many"],
            ["interval", "soon"],
            ["exercise", SQUAT, "", "100", "5"],
        ]
    )
    row, issues = parse_template(event)
    assert row is not None
    assert (row.template_type, row.duration_s, row.rest_between_rounds_s) == ("amrap", 1200.0, 90.0)
    assert (row.rounds, row.interval_s) == (None, None)
    assert issues == [
        Issue("bad_number", "rounds: 'many'", 5),
        Issue("bad_duration", "interval: 'soon'", 6),
    ]


def test_template_without_exercises_or_d() -> None:
    row, issues = parse_template(template_event([["title", "Empty"], ["exercise"]]))
    assert row is not None
    assert (row.d, row.sets) == ("", ())
    assert [i.reason for i in issues] == [
        "missing_d",
        "missing_type",
        "empty_exercise_tag",
        "no_exercises",
    ]
