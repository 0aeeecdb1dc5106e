"""Kind 1301 / 33403: the spec's examples §5 A-E parsed into exact rows."""

from __future__ import annotations

from dataclasses import replace

from indexer.dialect import detect_dialect, is_set_reference
from indexer.model import (
    Address,
    Hashtag,
    Issue,
    NonWorkout,
    PerformedSet,
    PersonalRecordClaim,
    Split,
    Workout,
)
from indexer.record import parse_record
from relay.nostr.event import Event

AUTHOR = "55127fc9e1c03c6b459a3bab72fdb99def1644c5f239bdd09f3e5fb401ed9b21"
EX_PK = "9947f9659dd80c3682402b612f5447e28249997fb3709500c32a585eb0977340"
EVENT_ID = "a" * 64


def record_event(
    tags: list[list[str]], content: str = "", kind: int = 1301, created_at: int = 1740000000
) -> Event:
    return Event(
        id=EVENT_ID,
        pubkey=AUTHOR,
        created_at=created_at,
        kind=kind,
        tags=tags,
        content=content,
        sig="0" * 128,
    )


def blank_workout(**fields: object) -> Workout:
    """A Workout with every optional field empty, then ``fields`` applied."""
    base = Workout(
        event_id=EVENT_ID,
        kind=1301,
        pubkey=AUTHOR,
        d=None,
        created_at=1740000000,
        dialect="nip101e",
        title=None,
        workout_type=None,
        activity=None,
        activity_raw=None,
        started_at=None,
        ended_at=None,
        start_raw=None,
        end_raw=None,
        duration_s=None,
        duration_raw=None,
        completed=None,
        rounds_completed=None,
        interval_s=None,
        template=None,
        notes="",
        client=None,
        source=None,
        hashtags=(),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


SQUAT = "33401:<pubkey>:<UUID-squat>"
DEADLIFT = "33401:<pubkey>:<UUID-deadlift>"
SQUAT_A = Address(SQUAT, 33401, None, "<UUID-squat>", "<relay-url>")
DEADLIFT_A = Address(DEADLIFT, 33401, None, "<UUID-deadlift>", "<relay-url>")
LEG_NOTES = (
    "Completed first round as prescribed. Second round showed form deterioration on deadlifts."
)


def test_spec_5a_pr_1816_leg_circuit() -> None:
    event = record_event(
        [
            ["d", "<UUID-workout-record>"],
            ["title", "Leg Circuit"],
            ["type", "circuit"],
            ["rounds_completed", "1.5"],
            ["start", "1706454000"],
            ["end", "1706455800"],
            ["exercise", SQUAT, "<relay-url>", "80", "12", "7", "normal"],
            ["exercise", DEADLIFT, "<relay-url>", "100", "10", "7", "normal"],
            ["exercise", SQUAT, "<relay-url>", "80", "12", "8", "normal"],
            ["exercise", DEADLIFT, "<relay-url>", "100", "4", "10", "failure"],
            ["completed", "false"],
            ["t", "legs"],
        ],
        LEG_NOTES,
    )
    row, issues = parse_record(event)
    assert row == blank_workout(
        d="<UUID-workout-record>",
        title="Leg Circuit",
        workout_type="circuit",
        activity="circuit",
        activity_raw="circuit",
        started_at=1706454000.0,
        ended_at=1706455800.0,
        start_raw="1706454000",
        end_raw="1706455800",
        duration_s=1800.0,
        completed=False,
        rounds_completed=1.5,
        notes=LEG_NOTES,
        hashtags=(Hashtag("legs", "legs"),),
        sets=(
            PerformedSet(0, 6, SQUAT_A, ("80", "12", "7", "normal"), 1, False),
            PerformedSet(1, 7, DEADLIFT_A, ("100", "10", "7", "normal"), 1, False),
            PerformedSet(2, 8, SQUAT_A, ("80", "12", "8", "normal"), 2, False),
            PerformedSet(3, 9, DEADLIFT_A, ("100", "4", "10", "failure"), 2, False),
        ),
    )
    assert [i.reason for i in issues] == ["malformed_coordinate"] * 4


def test_spec_5b_real_powr_rn_record() -> None:
    event = Event(
        id="6be36ad8e40ff2e64008c31c3bc26394118a2b81719548afb8d658a0ab09184b",
        pubkey=AUTHOR,
        created_at=1742703619,
        kind=1301,
        tags=[
            ["d", "local:m8l4pktv-97r1n75ckvc"],
            ["title", "Simple Strength Workout"],
            ["type", "strength"],
            ["start", "1742703570"],
            ["end", "1742703578"],
            ["completed", "true"],
            ["template", "33402::local:m8l4p7sp-t3z81ndyajf", ""],
            ["exercise", "33401:local:m8l4pktv-bbjg6yus28d", "", "0", "8", "normal"],
            ["exercise", "33401:local:m8l4pktv-iwdfkt232bi", "", "0", "8", "normal"],
            ["exercise", "33401:local:m8l4pktv-4bod5iu9i58", "", "0", "8", "normal"],
        ],
        content="",
        sig="0" * 128,
    )
    row, issues = parse_record(event)
    assert row == blank_workout(
        event_id="6be36ad8e40ff2e64008c31c3bc26394118a2b81719548afb8d658a0ab09184b",
        created_at=1742703619,
        d="local:m8l4pktv-97r1n75ckvc",
        title="Simple Strength Workout",
        workout_type="strength",
        activity="strength",
        activity_raw="strength",
        started_at=1742703570.0,
        ended_at=1742703578.0,
        start_raw="1742703570",
        end_raw="1742703578",
        duration_s=8.0,
        completed=True,
        template=Address(
            "33402::local:m8l4p7sp-t3z81ndyajf", 33402, None, "local:m8l4p7sp-t3z81ndyajf", None
        ),
        sets=(
            PerformedSet(
                0,
                7,
                Address("33401:local:m8l4pktv-bbjg6yus28d", 33401, None, "m8l4pktv-bbjg6yus28d"),
                ("0", "8", "normal"),
                1,
                False,
            ),
            PerformedSet(
                1,
                8,
                Address("33401:local:m8l4pktv-iwdfkt232bi", 33401, None, "m8l4pktv-iwdfkt232bi"),
                ("0", "8", "normal"),
                1,
                False,
            ),
            PerformedSet(
                2,
                9,
                Address("33401:local:m8l4pktv-4bod5iu9i58", 33401, None, "m8l4pktv-4bod5iu9i58"),
                ("0", "8", "normal"),
                1,
                False,
            ),
        ),
    )
    assert issues == [
        Issue("malformed_coordinate", "'33402::local:m8l4p7sp-t3z81ndyajf'", 6),
        Issue("malformed_coordinate", "'33401:local:m8l4pktv-bbjg6yus28d'", 7),
        Issue("malformed_coordinate", "'33401:local:m8l4pktv-iwdfkt232bi'", 8),
        Issue("malformed_coordinate", "'33401:local:m8l4pktv-4bod5iu9i58'", 9),
    ]


def test_spec_5c_v4_with_set_numbers() -> None:
    squat = f"33401:{EX_PK}:squat"
    deadlift = f"33401:{EX_PK}:deadlift"
    event = record_event(
        [
            ["d", "<UUID-workout-record>"],
            ["title", "Leg Circuit"],
            ["type", "circuit"],
            ["rounds_completed", "1.5"],
            ["start", "1706454000"],
            ["end", "1706455800"],
            ["exercise", squat, "wss://r", "0", "12", "7", "normal", "1"],
            ["exercise", deadlift, "wss://r", "0", "10", "7", "normal", "1"],
            ["exercise", squat, "wss://r", "0", "12", "8", "normal", "2"],
            ["exercise", deadlift, "wss://r", "0", "4", "10", "failure", "2"],
            ["completed", "true"],
            ["t", "legs"],
        ],
        LEG_NOTES,
    )
    row, issues = parse_record(event)
    assert issues == []
    assert isinstance(row, Workout)
    squat_a = Address(squat, 33401, EX_PK, "squat", "wss://r")
    deadlift_a = Address(deadlift, 33401, EX_PK, "deadlift", "wss://r")
    assert row.completed is True
    assert row.sets == (
        PerformedSet(0, 6, squat_a, ("0", "12", "7", "normal"), 1, True),
        PerformedSet(1, 7, deadlift_a, ("0", "10", "7", "normal"), 1, True),
        PerformedSet(2, 8, squat_a, ("0", "12", "8", "normal"), 2, True),
        PerformedSet(3, 9, deadlift_a, ("0", "4", "10", "failure"), 2, True),
    )


def test_spec_5d_powr_web_generator_ms_times() -> None:
    pushup = f"33401:{EX_PK}:pushup-standard"
    event = record_event(
        [
            ["d", "push-workout-bodyweight-1750811660000"],
            ["title", "POWR Test Push Workout"],
            ["type", "strength"],
            ["start", "1750811660000"],
            ["end", "1750813460000"],
            ["duration", "1800"],
            ["completed", "true"],
            ["template", f"33402:{EX_PK}:push-workout-bodyweight", ""],
            ["exercise", pushup, "", "0", "10", "7", "normal", "1"],
            ["exercise", pushup, "", "0", "8", "7", "normal", "2"],
            ["t", "fitness"],
            ["t", "strength"],
            ["client", "POWR"],
        ],
        created_at=1750813460,
    )
    row, issues = parse_record(event)
    assert issues == []
    pushup_a = Address(pushup, 33401, EX_PK, "pushup-standard", None)
    assert row == blank_workout(
        created_at=1750813460,
        d="push-workout-bodyweight-1750811660000",
        title="POWR Test Push Workout",
        workout_type="strength",
        activity="strength",
        activity_raw="strength",
        started_at=1750811660.0,
        ended_at=1750813460.0,
        start_raw="1750811660000",
        end_raw="1750813460000",
        duration_s=1800.0,
        duration_raw="1800",
        completed=True,
        template=Address(
            f"33402:{EX_PK}:push-workout-bodyweight",
            33402,
            EX_PK,
            "push-workout-bodyweight",
            None,
        ),
        client="POWR",
        hashtags=(Hashtag("fitness", "fitness"), Hashtag("strength", "strength")),
        sets=(
            PerformedSet(0, 8, pushup_a, ("0", "10", "7", "normal"), 1, True),
            PerformedSet(1, 9, pushup_a, ("0", "8", "7", "normal"), 2, True),
        ),
    )


def test_spec_5e_runstr_run() -> None:
    event = record_event(
        [
            ["d", "workout_2024-01-15_082345"],
            ["title", "Morning 5K"],
            ["exercise", "running"],
            ["distance", "5.0", "km"],
            ["duration", "00:28:15"],
            ["calories", "285"],
            ["elevation_gain", "45", "m"],
            ["elevation_loss", "38", "m"],
            ["avg_heart_rate", "142"],
            ["split", "1", "00:05:38"],
            ["split", "2", "00:11:22"],
            ["split_pace", "1", "338"],
            ["split_pace", "2", "344"],
            ["avg_pace", "05:39", "min/km"],
            ["data_points", "1687"],
            ["recording_pauses", "1"],
            ["workout_start_time", "1736950800"],
            ["source", "RUNSTR"],
            ["client", "RUNSTR", "0.2.6"],
            ["t", "Running"],
        ],
        "Morning 5K run - beautiful weather!",
    )
    row, issues = parse_record(event)
    assert issues == []
    assert row == blank_workout(
        d="workout_2024-01-15_082345",
        dialect="runstr",
        title="Morning 5K",
        activity="running",
        activity_raw="running",
        started_at=1736950800.0,
        start_raw="1736950800",
        duration_s=1695.0,
        duration_raw="00:28:15",
        notes="Morning 5K run - beautiful weather!",
        client="RUNSTR",
        source="RUNSTR",
        hashtags=(Hashtag("running", "Running"),),
        distance_m=5000.0,
        distance_raw="5.0",
        distance_unit="km",
        elevation_gain_m=45.0,
        elevation_loss_m=38.0,
        calories=285.0,
        avg_heart_rate=142.0,
        avg_pace_s_per_km=339.0,
        avg_pace_raw="05:39",
        avg_pace_unit="min/km",
        splits=(Split(1, 338.0, 338.0, None), Split(2, 682.0, 344.0, None)),
    )


def test_runstr_miles_feet_steps_and_heart_rates() -> None:
    event = record_event(
        [
            ["d", "w"],
            ["title", "Hill walk"],
            ["exercise", "walking"],
            ["distance", "3.10", "mi"],
            ["duration", "52:10"],
            ["elevation_gain", "300", "ft"],
            ["steps", "6400"],
            ["max_heart_rate", "171"],
            ["avg_pace", "16:50", "min/mi"],
            ["source", "healthkit"],
        ]
    )
    row, issues = parse_record(event)
    assert issues == []
    assert isinstance(row, Workout)
    assert row.dialect == "runstr"
    assert row.distance_m is not None and abs(row.distance_m - 4988.9664) < 1e-6
    assert (row.distance_raw, row.distance_unit) == ("3.10", "mi")
    assert row.duration_s == 3130.0
    assert row.elevation_gain_m is not None and abs(row.elevation_gain_m - 91.44) < 1e-9
    assert (row.steps, row.max_heart_rate, row.source) == (6400.0, 171.0, "healthkit")
    assert row.avg_pace_s_per_km is not None
    assert abs(row.avg_pace_s_per_km - 1010 / 1.609344) < 1e-9


def test_runstr_distance_without_unit_is_km_and_bad_values() -> None:
    event = record_event(
        [
            ["exercise", "cycling"],
            ["distance", "20"],
            ["calories", "lots"],
            ["elevation_loss", "10", "furlongs"],
            ["avg_pace", "fast", "min/km"],
            ["split", "x", "00:01:00"],
            ["split", "1"],
        ]
    )
    row, issues = parse_record(event)
    assert isinstance(row, Workout)
    assert (row.distance_m, row.calories, row.elevation_loss_m, row.splits) == (
        20000.0,
        None,
        None,
        (),
    )
    assert issues == [
        Issue("missing_d", "no d tag"),
        Issue("missing_title", "no title or workout tag"),
        Issue("unknown_unit", "elevation_loss: 'furlongs'", 3),
        Issue("bad_pace", "avg_pace: 'fast' 'min/km'", 4),
        Issue("bad_number", "calories: 'lots'", 2),
        Issue("bad_split", "['split', 'x', '00:01:00']", 5),
        Issue("bad_split", "['split', '1']", 6),
    ]


def test_pr_tags_both_forms() -> None:
    squat = f"33401:{EX_PK}:squat"
    event = record_event(
        [
            ["d", "w"],
            ["title", "T"],
            ["type", "strength"],
            ["start", "1706454000"],
            ["end", "1706455800"],
            ["completed", "true"],
            ["exercise", squat, "", "140", "3", "9", "normal", "1"],
            ["pr", f"{squat},1rm,150"],
            ["pr", squat, "max_weight", "140"],
            ["pr", f"{squat},wss://relay.x,max_reps,12"],
            ["pr", squat, "MAX_VOLUME", "lots"],
            ["pr", f"{squat},1rm"],
            ["pr", squat, "1rm"],
        ]
    )
    row, issues = parse_record(event)
    assert isinstance(row, Workout)
    squat_a = Address(squat, 33401, EX_PK, "squat", None)
    assert row.prs == (
        PersonalRecordClaim(0, squat_a, "1rm", 150.0, f"{squat},1rm,150"),
        PersonalRecordClaim(1, squat_a, "max_weight", 140.0, f"{squat},max_weight,140"),
        PersonalRecordClaim(
            2,
            Address(f"{squat},wss://relay.x", 33401, EX_PK, "squat", "wss://relay.x"),
            "max_reps",
            12.0,
            f"{squat},wss://relay.x,max_reps,12",
        ),
        PersonalRecordClaim(3, squat_a, "max_volume", None, f"{squat},MAX_VOLUME,lots"),
        PersonalRecordClaim(4, squat_a, "1rm", None, f"{squat},1rm"),
        PersonalRecordClaim(5, squat_a, "1rm", None, f"{squat},1rm"),
    )
    assert issues == [Issue("bad_number", "pr value: 'lots'", 10)]


def test_template_from_a_tag_v5_and_template_tag_wins() -> None:
    tpl = f"33402:{EX_PK}:push-day"
    tags = [
        ["d", "w"],
        ["title", "T"],
        ["type", "strength"],
        ["start", "1"],
        ["end", "2"],
        ["completed", "true"],
        ["a", f"30023:{EX_PK}:article"],
        ["a", tpl, "wss://relay.powr"],
    ]
    row, _ = parse_record(record_event(tags))
    assert isinstance(row, Workout)
    assert row.template == Address(tpl, 33402, EX_PK, "push-day", "wss://relay.powr")
    other = f"33402:{EX_PK}:other"
    row, _ = parse_record(record_event([*tags, ["template", other]]))
    assert isinstance(row, Workout)
    assert row.template == Address(other, 33402, EX_PK, "other", None)


def test_legacy_33403_is_nip101e_and_keeps_empty_d() -> None:
    row, issues = parse_record(record_event([["title", "Old"]], kind=33403))
    assert isinstance(row, Workout)
    assert (row.kind, row.dialect, row.d, row.title) == (33403, "nip101e", "", "Old")
    assert [i.reason for i in issues] == [
        "missing_d",
        "missing_type",
        "missing_start",
        "missing_end",
        "missing_completed",
    ]


def test_detect_dialect() -> None:
    assert detect_dialect(record_event([["exercise", f"33401:{EX_PK}:x"]])) == "nip101e"
    assert detect_dialect(record_event([["exercise", "33401:abc"]])) == "nip101e"
    assert detect_dialect(record_event([["exercise", f"30023:{EX_PK}:x"]])) == "nip101e"
    assert detect_dialect(record_event([["exercise", "Running"]])) == "runstr"
    assert detect_dialect(record_event([["distance", "5", "km"]])) == "runstr"
    assert detect_dialect(record_event([["client", "runstr"]])) == "runstr"
    assert detect_dialect(record_event([["source", "healthkit"]])) == "runstr"
    assert detect_dialect(record_event([["duration", "00:30:00"]])) == "runstr"
    assert detect_dialect(record_event([["duration", "1800"]])) == "no_workout_tags"
    assert detect_dialect(record_event([["start", "1"], ["completed", "true"]])) == "nip101e"
    assert detect_dialect(record_event([["template", "33402::x"]])) == "nip101e"
    assert detect_dialect(record_event([["title", "Hi"]])) == "no_workout_tags"
    assert detect_dialect(record_event([["rcpt", "bob@example.com"]])) == "email"


def test_is_set_reference() -> None:
    assert is_set_reference(f"33401:{EX_PK}:squat")
    assert is_set_reference("33401:local:x")
    assert is_set_reference(" 33401:x")
    assert not is_set_reference("running")
    assert not is_set_reference("33401")
    assert not is_set_reference(f"x:{EX_PK}:squat")


def test_non_workout_row() -> None:
    row, issues = parse_record(record_event([["t", "misc"]], "hello"))
    assert row == NonWorkout(EVENT_ID, AUTHOR, 1740000000, "no_workout_tags")
    assert issues == []


def test_splits_merge_by_number_and_first_value_wins() -> None:
    event = record_event(
        [
            ["d", "w"],
            ["title", "Intervals"],
            ["exercise", "running"],
            ["split_pace", "2", "300"],
            ["split", "2", "00:10:30"],
            ["split", "1", "00:05:30"],
            ["split", "1", "00:05:31"],
            ["split_pace", "1", "05:30"],
            ["split", "3", "1000", "m", "5:45", "140", "bpm"],
        ]
    )
    row, issues = parse_record(event)
    assert isinstance(row, Workout)
    assert row.splits == (Split(1, 330.0, 330.0, None), Split(2, 630.0, 300.0, None))
    assert issues == [
        Issue("duplicate_split", "split 1: elapsed_s", 6),
        Issue("bad_split", "['split', '3', '1000', 'm', '5:45', '140', 'bpm']", 8),
    ]
