"""One test per edge case of spec §9 (nip101e.md), parser side."""

from __future__ import annotations

from indexer.address import parse_address
from indexer.model import (
    Address,
    Exercise,
    Hashtag,
    Issue,
    Media,
    NonWorkout,
    PerformedSet,
    PersonalRecordClaim,
    SetValues,
    Split,
    Template,
    Workout,
)
from indexer.sets import map_set, split_set_number
from indexer.transform import derive
from relay.nostr.event import Event
from relay.nostr.kinds import FITNESS_KINDS

ME = "55127fc9e1c03c6b459a3bab72fdb99def1644c5f239bdd09f3e5fb401ed9b21"
PK = "9947f9659dd80c3682402b612f5447e28249997fb3709500c32a585eb0977340"
OTHER = "1" * 64


def make(kind: int, tags: list[list[str]], content: str = "", pubkey: str = ME) -> Event:
    return Event(
        id="c" * 64,
        pubkey=pubkey,
        created_at=1740000000,
        kind=kind,
        tags=tags,
        content=content,
        sig="0" * 128,
    )


def workout(tags: list[list[str]], content: str = "", kind: int = 1301) -> Workout:
    row = derive(make(kind, tags, content)).row
    assert isinstance(row, Workout)
    return row


def test_edge_01_same_tag_names_two_meanings() -> None:
    strength = workout([["exercise", f"33401:{PK}:squat", "", "100", "5", "8", "normal"]])
    assert strength.dialect == "nip101e"
    assert len(strength.sets) == 1 and strength.activity is None
    run = workout([["exercise", "running"], ["duration", "00:30:00"]])
    assert (run.dialect, run.activity, run.sets, run.duration_s) == (
        "runstr",
        "running",
        (),
        1800.0,
    )
    seconds = workout(
        [["exercise", f"33401:{PK}:squat"], ["duration", "1800"], ["start", "1"], ["end", "5"]]
    )
    assert (seconds.duration_s, seconds.duration_raw) == (1800.0, "1800")
    mm_ss = workout([["exercise", "walking"], ["duration", "45:30"]])
    assert mm_ss.duration_s == 2730.0
    absent = workout([["exercise", f"33401:{PK}:squat"], ["start", "100"], ["end", "460"]])
    assert (absent.duration_s, absent.duration_raw) == (360.0, None)


def test_edge_02_start_end_seconds_or_ms() -> None:
    ms = workout([["exercise", "33401:x"], ["start", "1750811660000"], ["end", "1750813460000"]])
    assert (ms.started_at, ms.ended_at, ms.duration_s) == (1750811660.0, 1750813460.0, 1800.0)
    mixed = workout([["exercise", "33401:x"], ["start", "1750811660000"], ["end", "1750813460"]])
    assert (mixed.started_at, mixed.ended_at, mixed.duration_s) == (
        1750811660.0,
        1750813460.0,
        1800.0,
    )
    empty_end = derive(make(1301, [["exercise", "33401:x"], ["start", "1742703570"], ["end", ""]]))
    assert isinstance(empty_end.row, Workout)
    assert (empty_end.row.ended_at, empty_end.row.end_raw, empty_end.row.duration_s) == (
        None,
        "",
        None,
    )
    assert [i.reason for i in empty_end.issues if i.reason != "malformed_coordinate"] == [
        "missing_d",
        "missing_title",
        "missing_type",
        "missing_completed",
    ]
    backwards = derive(make(1301, [["exercise", "33401:x"], ["start", "2000"], ["end", "1000"]]))
    assert isinstance(backwards.row, Workout)
    assert (backwards.row.started_at, backwards.row.ended_at, backwards.row.duration_s) == (
        2000.0,
        1000.0,
        None,
    )
    assert Issue("end_before_start", "start '2000', end '1000'") in backwards.issues
    garbage = derive(make(1301, [["exercise", "33401:x"], ["start", "yesterday"]]))
    assert Issue("bad_timestamp", "start: 'yesterday'", 1) in garbage.issues


def test_edge_03_malformed_coordinates() -> None:
    cases = {
        "33401:m8l4pktv-bbjg6yus28d": (33401, None, "m8l4pktv-bbjg6yus28d", None),
        "33401:local:m8l4pktv-bbjg6yus28d": (33401, None, "m8l4pktv-bbjg6yus28d", None),
        "33402::local:m8l4p7sp-t3z81ndyajf": (33402, None, "local:m8l4p7sp-t3z81ndyajf", None),
        f"33401:{PK.upper()}:pushup-standard": (33401, None, "pushup-standard", None),
        f"33401:{PK}:squat,wss://relay.powr.me": (33401, PK, "squat", "wss://relay.powr.me"),
        f"33401:{PK}:squat::3:10:60": (33401, PK, "squat", None),
    }
    for raw, (kind, pubkey, d, relay) in cases.items():
        assert parse_address(raw) == Address(raw, kind, pubkey, d, relay)
    # In a record every one of them is still a set, with the raw value kept and noted.
    tags = [["exercise", raw, "", "50", "5"] for raw in cases]
    outcome = derive(make(1301, [["d", "w"], *tags]))
    assert isinstance(outcome.row, Workout)
    assert [s.exercise.raw for s in outcome.row.sets] == list(cases)
    assert [(i.tag_index, i.reason) for i in outcome.issues if i.tag_index is not None] == [
        (1, "malformed_coordinate"),
        (2, "malformed_coordinate"),
        (3, "unexpected_kind"),  # a 33402 coordinate where an exercise belongs
        (4, "malformed_coordinate"),
    ]


def test_edge_04_positions_shift() -> None:
    # POWR RN without rpe: set_type at tag index 5, values index 2.
    row = workout([["exercise", "33401:local:x", "", "0", "8", "normal"]])
    assert row.sets[0].values_raw == ("0", "8", "normal")
    assert map_set(row.sets[0].values_raw) == SetValues(
        weight_kg=0.0,
        weight_raw="0",
        reps=8.0,
        set_type="normal",
        set_type_raw="normal",
        mapped_by="keywords",
    )
    # The exercise's format, once known, is used with the keyword as a sanity check.
    mapped = map_set(("0", "8", "normal"), ("weight", "reps", "rpe", "set_type"), ("kg",) * 4)
    assert (mapped.reps, mapped.rpe, mapped.set_type, mapped.mapped_by) == (
        8.0,
        None,
        "normal",
        "keywords",
    )
    # "Limited" mode: a two-element tag is still one set, without values.
    limited = workout([["exercise", "33401:abc"], ["exercise", "33401:abc"]])
    assert [(s.values_raw, s.set_number) for s in limited.sets] == [((), 1), ((), 2)]
    assert map_set(limited.sets[0].values_raw) == SetValues(mapped_by="none")


def test_edge_05_set_number_missing_and_no_dedupe() -> None:
    squat = f"33401:{PK}:squat"
    bench = f"33401:{PK}:bench"
    identical = ["exercise", squat, "", "100", "5", "8", "normal"]
    row = workout([identical, list(identical), list(identical)])
    assert [(s.position, s.set_number, s.set_number_given) for s in row.sets] == [
        (0, 1, False),
        (1, 2, False),
        (2, 3, False),
    ]
    tpl = derive(
        make(
            33402,
            [
                ["d", "ss"],
                ["exercise", squat, "", "100", "5", "8", "normal", "1"],
                ["exercise", bench, "", "80", "8", "8", "normal", "1"],
                ["exercise", squat, "", "100", "5", "8", "normal", "2"],
                ["exercise", bench, "", "80", "8", "8", "normal", "2"],
            ],
        )
    ).row
    assert isinstance(tpl, Template)
    assert [(s.exercise.d, s.group_number) for s in tpl.sets] == [
        ("squat", 1),
        ("bench", 1),
        ("squat", 2),
        ("bench", 2),
    ]
    assert split_set_number(("100", "5", "8", "normal")) == (("100", "5", "8", "normal"), None)


def test_edge_06_units_and_values() -> None:
    ex = derive(
        make(
            33401,
            [
                ["d", "curl"],
                ["title", "Curl"],
                ["format", "weight", "reps", "rpe", "set_type"],
                [
                    "format_units",
                    "weight",
                    "lbs",
                    "reps",
                    "count",
                    "rpe",
                    "0-10",
                    "set_type",
                    "enum",
                ],
                ["equipment", "dumbbell"],
            ],
        )
    ).row
    assert isinstance(ex, Exercise)
    assert ex.format_units == ("lbs", "count", "0-10", "enum")
    fmt, units = ex.format, ex.format_units
    lbs = map_set(("25", "12", "7.5", "working"), fmt, units)
    assert (round(lbs.weight_kg or 0, 6), lbs.weight_unit, lbs.rpe, lbs.set_type) == (
        11.339809,
        "lbs",
        7.5,
        "working",
    )
    assert map_set(("", "10"), fmt, units).weight_kg is None
    assert map_set(("0", "10"), fmt, units).weight_kg == 0.0
    assert map_set(("-20", "10"), fmt, ("kg",)).weight_kg == -20.0
    junk = map_set(("abc", "ten", "x", "superset"), fmt, units)
    assert (junk.weight_kg, junk.weight_raw, junk.reps, junk.rpe) == (None, "abc", None, None)
    assert (junk.set_type, junk.set_type_raw) == (None, "superset")
    plank = map_set(("0", "60", "7", "normal"), ("weight", "duration", "rpe", "set_type"), ())
    assert (plank.duration_s, plank.reps) == (60.0, None)
    short = derive(make(33401, [["d", "x"], ["format", "weight", "reps"], ["format_units", "kg"]]))
    assert Issue("format_units_length", "format has 2 entries, format_units 1", 2) in short.issues


def test_edge_07_missing_dependencies_kept_unresolved() -> None:
    # An exercise that does not exist (yet), belongs to another author, or is malformed:
    # the record keeps every set and its raw reference; values map in the default order.
    row = workout(
        [
            ["d", "w"],
            ["exercise", f"33401:{OTHER}:not-published-yet", "", "60", "10", "7", "normal", "1"],
            ["exercise", "33401:local:gone", "", "60", "10"],
        ]
    )
    assert [s.exercise for s in row.sets] == [
        Address(f"33401:{OTHER}:not-published-yet", 33401, OTHER, "not-published-yet"),
        Address("33401:local:gone", 33401, None, "gone"),
    ]
    assert row.sets[0].exercise.resolvable and not row.sets[1].exercise.resolvable
    assert map_set(row.sets[0].values_raw).mapped_by == "default"


def test_edge_08_same_d_under_many_pubkeys() -> None:
    tags = [["d", "push-up"], ["title", "Push-up"], ["format", "reps"], ["format_units", "count"]]
    mine = derive(make(33401, tags, pubkey=ME)).row
    theirs = derive(make(33401, tags, pubkey=OTHER)).row
    assert isinstance(mine, Exercise) and isinstance(theirs, Exercise)
    assert (mine.pubkey, mine.d) == (ME, "push-up")
    assert (theirs.pubkey, theirs.d) == (OTHER, "push-up")
    # References keep the pubkey so the two never merge.
    a = parse_address(f"33401:{ME}:push-up")
    b = parse_address(f"33401:{OTHER}:push-up")
    assert (a.pubkey, a.d) != (b.pubkey, b.d)


def test_edge_09_template_reference_forms_and_deletions() -> None:
    coord = f"33402:{PK}:leg-day"
    base = [["d", "w"], ["exercise", f"33401:{PK}:squat"]]
    via_template = workout([*base, ["template", coord, "wss://r"]])
    via_a = workout([*base, ["a", coord, "wss://r"]])
    assert (
        via_template.template == via_a.template == Address(coord, 33402, PK, "leg-day", "wss://r")
    )
    wrong_kind = derive(make(1301, [*base, ["template", f"33401:{PK}:squat"]]))
    assert Issue("unexpected_kind", f"expected kind 33402: '33401:{PK}:squat'", 2) in (
        wrong_kind.issues
    )
    # Deletions (kind 5) are the store's business: the parser derives nothing from them.
    assert 5 not in FITNESS_KINDS
    assert derive(make(5, [["a", coord], ["e", "d" * 64], ["k", "33402"]])).row is None


def test_edge_10_multi_letter_filters_keep_raw_values() -> None:
    # exercise[1] and template[1] are kept exactly, so they can be indexed as written.
    raw_set = f"33401:{PK}:squat,wss://relay.powr.me"
    raw_tpl = "33402::local:m8l4p7sp-t3z81ndyajf"
    row = workout([["exercise", raw_set, "", "1", "2"], ["template", raw_tpl, ""]])
    assert row.sets[0].exercise.raw == raw_set
    assert row.template is not None and row.template.raw == raw_tpl


def test_edge_11_repeated_singletons_first_wins() -> None:
    outcome = derive(
        make(
            1301,
            [
                ["d", "first-d"],
                ["d", "second-d"],
                ["title", "First"],
                ["title", "Second"],
                ["type", "strength"],
                ["type", "strength"],
                ["exercise", "33401:x"],
                ["t", "Running"],
                ["t", "running"],
                ["t", "  LEGS "],
                ["t", ""],
            ],
        )
    )
    row = outcome.row
    assert isinstance(row, Workout)
    assert (row.d, row.title, row.workout_type) == ("first-d", "First", "strength")
    assert row.hashtags == (Hashtag("running", "Running"), Hashtag("legs", "  LEGS "))
    repeated = [i for i in outcome.issues if i.reason == "repeated_tag"]
    # An identical repeat is not a disagreement.
    assert repeated == [
        Issue("repeated_tag", "d: kept the first value", 1),
        Issue("repeated_tag", "title: kept the first value", 3),
    ]


def test_edge_12_imeta_both_forms() -> None:
    row = derive(
        make(
            33401,
            [
                ["d", "x"],
                ["imeta", "url https://a/1.mp4", "m video/mp4", "dim 1920x1080", "alt Front view"],
                ["imeta", "url https://youtu.be/WDIpL0pjun0 m video/mp4 purpose demonstration"],
            ],
        )
    ).row
    assert isinstance(row, Exercise)
    assert row.media == (
        Media(
            "https://a/1.mp4",
            "video/mp4",
            1920,
            1080,
            "Front view",
            "url https://a/1.mp4;m video/mp4;dim 1920x1080;alt Front view",
        ),
        Media(
            "https://youtu.be/WDIpL0pjun0",
            "video/mp4",
            None,
            None,
            None,
            "url https://youtu.be/WDIpL0pjun0 m video/mp4 purpose demonstration",
        ),
    )


EMAIL = (
    "From: alice@example.com\r\n"
    "To: bob@example.com\r\n"
    "Subject: Leg day?\r\n"
    "Date: Mon, 3 Mar 2025 10:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    "\r\n"
    "Squats at 5? Duration: 1 hour.\r\n"
)


def test_edge_13_non_fitness_1301_and_kind_collisions() -> None:
    mail = derive(make(1301, [["p", OTHER], ["rcpt", "bob@example.com"]], EMAIL))
    assert mail == derive(make(1301, [["p", OTHER]], EMAIL))
    assert mail.row == NonWorkout("c" * 64, ME, 1740000000, "email")
    assert mail.issues == ()
    bare = derive(make(1301, [["title", "Just a title"]], "hello"))
    assert bare.row == NonWorkout("c" * 64, ME, 1740000000, "no_workout_tags")
    # A workout whose notes happen to start with a header-like line is still a workout.
    run = derive(make(1301, [["exercise", "running"]], "Subject: easy run\nFrom: home"))
    assert isinstance(run.row, Workout)
    # 30100 is a RUNSTR league, NIP-113 activity and a Yakihonne kind: not indexed here.
    assert 30100 not in FITNESS_KINDS
    assert derive(make(30100, [["d", "x"], ["exercise", "running"]])) == derive(make(30100, []))


def test_edge_14_content_json_or_long_summary() -> None:
    ex = derive(make(33401, [["d", "x"]], '{"instructions": "Keep a neutral spine."}')).row
    assert isinstance(ex, Exercise) and ex.instructions == "Keep a neutral spine."
    summary = "Workout summary\n" + "Set 1: 100kg x 5 @ RPE 8\n" * 400
    row = workout([["exercise", f"33401:{PK}:squat"]], summary)
    assert row.notes == summary
    json_notes = '{"summary": "not instructions"}'
    assert workout([["exercise", "33401:x"]], json_notes).notes == json_notes


def test_edge_15_legacy_33403_and_pr_forms() -> None:
    squat = f"33401:{PK}:bb-back-squat-template"
    legacy = derive(
        make(
            33403,
            [
                ["d", "old-record"],
                ["title", "Leg Day"],
                ["type", "strength"],
                ["start", "1738700000"],
                ["end", "1738703600"],
                ["completed", "true"],
                ["exercise", squat, "wss://powr.me", "100", "5", "8", "normal"],
                ["pr", f"{squat},1rm,115"],
                ["pr", squat, "max_reps", "12"],
            ],
        )
    )
    row = legacy.row
    assert isinstance(row, Workout)
    assert legacy.issues == ()
    assert (row.kind, row.dialect, row.d, row.duration_s) == (
        33403,
        "nip101e",
        "old-record",
        3600.0,
    )
    squat_a = Address(squat, 33401, PK, "bb-back-squat-template", "wss://powr.me")
    assert row.sets == (PerformedSet(0, 6, squat_a, ("100", "5", "8", "normal"), 1, False),)
    plain = Address(squat, 33401, PK, "bb-back-squat-template")
    assert row.prs == (
        PersonalRecordClaim(0, plain, "1rm", 115.0, f"{squat},1rm,115"),
        PersonalRecordClaim(1, plain, "max_reps", 12.0, f"{squat},max_reps,12"),
    )


def test_edge_16_runstr_legacy_forms() -> None:
    outcome = derive(
        make(
            1301,
            [
                ["workout", "Evening Run"],
                ["exercise", "run"],
                ["distance", "5.20", "km"],
                ["duration", "00:27:40"],
                ["split", "1", "05:32", "1 km"],
                ["split", "2", "05:20", "1 km"],
                ["team", f"33404:{PK}:5d2b7c1e", "wss://relay.runstr", "Sat Runners"],
                ["team_uuid", "5d2b7c1e"],
                ["t", "team:5d2b7c1e"],
                ["source", "RUNSTR"],
            ],
        )
    )
    row = outcome.row
    assert isinstance(row, Workout)
    assert (row.dialect, row.title, row.activity, row.activity_raw) == (
        "runstr",
        "Evening Run",
        "running",
        "run",
    )
    assert (row.distance_m, row.duration_s, row.source) == (5200.0, 1660.0, "RUNSTR")
    assert row.splits == (Split(1, None, 332.0, "1 km"), Split(2, None, 320.0, "1 km"))
    # The team coordinate is neither a set nor a template.
    assert (row.sets, row.template) == ((), None)
    assert outcome.issues == (Issue("missing_d", "no d tag"),)
    walk = workout([["exercise", "walk"], ["source", "gps"]])
    cycle = workout([["exercise", "Cycle"], ["source", "manual"]])
    assert (walk.activity, walk.source, cycle.activity, cycle.source) == (
        "walking",
        "gps",
        "cycling",
        "manual",
    )
    bare_team = workout([["exercise", "running"], ["team", "5d2b7c1e"]])
    assert bare_team.dialect == "runstr"
