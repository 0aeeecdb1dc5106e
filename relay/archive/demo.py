"""A realistic, signed, reproducible fitness data set for ``fitrelay demo``.

One coach publishes a starter exercise library (kind 33401, equipment and hashtags as
NIP-101e clients publish them; the dumbbell and machine lifts in ``lbs``) and workout
templates (33402) referencing it. Each athlete then trains for ``weeks`` weeks: strength
sessions in the POWR dialect of kind 1301 (one ``exercise`` tag per set, a warm-up set,
weights that rise week by week, so the progression views show a trend) and runs, walks or
rides in RUNSTR's cardio dialect (``HH:MM:SS`` durations, ``km`` or ``mi``, splits).
The history also carries what a real relay sees: the coach edits two exercises and a
template (newer versions of addressable events), deletes an exercise a template still
references (a kind 5 by address, leaving a missing reference), and every athlete deletes
one workout logged twice (a kind 5 by id).

Everything (keys, ids, times, values) follows from ``seed``: the same seed gives the same
events, whatever the day it runs. :func:`generate` returns events in publishing order.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from relay.nostr.signing import SigningKey

__all__ = ["EXERCISES", "START", "TEMPLATES", "DemoKey", "generate"]

START = 1_735_516_800
"""Monday 2024-12-30 00:00 UTC: the coach publishes the library that week; training starts
the Monday after."""
DAY = 86_400
WEEK = 7 * DAY

Event = dict[str, Any]


@dataclass(frozen=True)
class Lift:
    d: str
    title: str
    equipment: str
    unit: str  # "kg", "lbs", or "" for bodyweight reps, "s" for a hold
    start: float  # a beginner's working weight in ``unit`` (reps for bodyweight, seconds held)
    tags: tuple[str, ...]
    category: str = "strength"


EXERCISES: tuple[Lift, ...] = (
    Lift(
        "barbell-back-squat",
        "Barbell Back Squat",
        "barbell",
        "kg",
        60,
        ("legs", "quads", "glutes", "compound"),
    ),
    Lift(
        "barbell-front-squat",
        "Barbell Front Squat",
        "barbell",
        "kg",
        45,
        ("legs", "quads", "compound"),
    ),
    Lift(
        "barbell-deadlift",
        "Barbell Deadlift",
        "barbell",
        "kg",
        80,
        ("legs", "back", "hamstrings", "posterior", "compound"),
    ),
    Lift(
        "romanian-deadlift",
        "Romanian Deadlift",
        "barbell",
        "kg",
        50,
        ("legs", "hamstrings", "glutes", "posterior"),
    ),
    Lift(
        "barbell-bench-press",
        "Barbell Bench Press",
        "barbell",
        "kg",
        50,
        ("chest", "triceps", "push", "compound"),
    ),
    Lift(
        "incline-bench-press",
        "Incline Bench Press",
        "barbell",
        "kg",
        40,
        ("chest", "shoulders", "push"),
    ),
    Lift(
        "overhead-press",
        "Overhead Press",
        "barbell",
        "kg",
        30,
        ("shoulders", "triceps", "push", "compound"),
    ),
    Lift(
        "barbell-row",
        "Barbell Row",
        "barbell",
        "kg",
        45,
        ("back", "lats", "biceps", "pull", "compound"),
    ),
    Lift("hip-thrust", "Barbell Hip Thrust", "barbell", "kg", 60, ("glutes", "hamstrings", "legs")),
    Lift(
        "dumbbell-bench-press",
        "Dumbbell Bench Press",
        "dumbbell",
        "lbs",
        35,
        ("chest", "triceps", "push"),
    ),
    Lift(
        "dumbbell-shoulder-press",
        "Dumbbell Shoulder Press",
        "dumbbell",
        "lbs",
        25,
        ("shoulders", "push"),
    ),
    Lift("dumbbell-row", "One-Arm Dumbbell Row", "dumbbell", "lbs", 35, ("back", "lats", "pull")),
    Lift(
        "dumbbell-curl", "Dumbbell Biceps Curl", "dumbbell", "lbs", 20, ("biceps", "arms", "pull")
    ),
    Lift(
        "lateral-raise", "Dumbbell Lateral Raise", "dumbbell", "lbs", 12, ("shoulders", "isolation")
    ),
    Lift("goblet-squat", "Goblet Squat", "dumbbell", "lbs", 40, ("legs", "quads", "glutes")),
    Lift(
        "walking-lunge",
        "Dumbbell Walking Lunge",
        "dumbbell",
        "lbs",
        25,
        ("legs", "quads", "glutes"),
    ),
    Lift(
        "kettlebell-swing",
        "Kettlebell Swing",
        "kettlebell",
        "kg",
        16,
        ("glutes", "hamstrings", "posterior", "conditioning"),
    ),
    Lift("lat-pulldown", "Lat Pulldown", "machine", "lbs", 90, ("back", "lats", "biceps", "pull")),
    Lift("seated-cable-row", "Seated Cable Row", "cable", "lbs", 80, ("back", "lats", "pull")),
    Lift("leg-press", "Leg Press", "machine", "lbs", 180, ("legs", "quads", "glutes")),
    Lift("leg-curl", "Lying Leg Curl", "machine", "lbs", 60, ("legs", "hamstrings", "isolation")),
    Lift("leg-extension", "Leg Extension", "machine", "lbs", 70, ("legs", "quads", "isolation")),
    Lift(
        "calf-raise", "Standing Calf Raise", "machine", "lbs", 100, ("legs", "calves", "isolation")
    ),
    Lift(
        "cable-triceps-pushdown",
        "Cable Triceps Pushdown",
        "cable",
        "lbs",
        40,
        ("triceps", "arms", "push"),
    ),
    Lift("face-pull", "Cable Face Pull", "cable", "lbs", 30, ("shoulders", "back", "pull")),
    Lift("push-up", "Push-Up", "bodyweight", "", 12, ("chest", "triceps", "push", "fitness")),
    Lift("pull-up", "Pull-Up", "pullup_bar", "", 5, ("back", "lats", "biceps", "pull")),
    Lift("dip", "Parallel Bar Dip", "bodyweight", "", 8, ("chest", "triceps", "push")),
    Lift("plank", "Plank", "bodyweight", "s", 45, ("core", "abs", "stability")),
    Lift("hanging-leg-raise", "Hanging Leg Raise", "pullup_bar", "", 8, ("core", "abs")),
    Lift(
        "farmers-carry", "Farmer's Carry", "dumbbell", "kg", 24, ("grip", "carry", "conditioning")
    ),
    Lift("battle-rope-waves", "Battle Rope Waves", "other", "s", 30, ("conditioning", "hiit")),
    Lift("nordic-curl", "Nordic Hamstring Curl", "bodyweight", "", 4, ("legs", "hamstrings")),
)
"""The starter library: d-tag, title, equipment, unit, a starting load, hashtags."""

TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "push-day": (
        "Push Day",
        (
            "barbell-bench-press",
            "overhead-press",
            "dumbbell-shoulder-press",
            "cable-triceps-pushdown",
            "lateral-raise",
            "dip",
        ),
    ),
    "pull-day": (
        "Pull Day",
        (
            "barbell-deadlift",
            "barbell-row",
            "lat-pulldown",
            "seated-cable-row",
            "dumbbell-curl",
            "face-pull",
        ),
    ),
    "leg-day": (
        "Leg Day",
        (
            "barbell-back-squat",
            "romanian-deadlift",
            "leg-press",
            "leg-curl",
            "leg-extension",
            "calf-raise",
        ),
    ),
    "full-body": (
        "Full Body Basics",
        (
            "goblet-squat",
            "dumbbell-bench-press",
            "dumbbell-row",
            "hip-thrust",
            "push-up",
            "plank",
            "battle-rope-waves",
        ),
    ),
    "posterior-chain": (
        "Posterior Chain",
        ("barbell-deadlift", "hip-thrust", "kettlebell-swing", "nordic-curl"),
    ),
}
"""Templates: d-tag → (title, exercise d-tags). ``nordic-curl`` is deleted by its author
later, so ``posterior-chain`` ends up with a missing reference."""

_SCHEDULES = (
    ("push-day", "pull-day", "leg-day"),
    ("full-body", "leg-day", "push-day"),
    ("full-body", "pull-day", "posterior-chain"),
)
_ACTIVITIES = (
    ("running", "Running", 6.0, 330),
    ("walking", "Walking", 4.0, 660),
    ("cycling", "Cycling", 15.0, 140),
)
_KM_PER_MI = 1.609344
RELAY = "wss://relay.example.org"


class DemoKey(SigningKey):
    """A key pair derived from the seed and a role name."""

    def __init__(self, seed: int, role: str) -> None:
        super().__init__(f"fitrelay-demo/{seed}/{role}")


def _format(lift: Lift) -> tuple[list[str], list[str]]:
    if lift.unit == "s":
        return ["weight", "duration", "rpe", "set_type"], ["kg", "seconds", "0-10", "enum"]
    return ["weight", "reps", "rpe", "set_type"], [lift.unit or "kg", "count", "0-10", "enum"]


def _exercise(coach: DemoKey, lift: Lift, at: int, note: str = "") -> Event:
    fmt, units = _format(lift)
    tags = [
        ["d", lift.d],
        ["title", lift.title],
        ["type", lift.category],
        ["format", *fmt],
        ["format_units", *units],
        ["equipment", lift.equipment],
        [
            "difficulty",
            "beginner" if lift.equipment in ("machine", "bodyweight") else "intermediate",
        ],
        *(["t", t] for t in lift.tags),
    ]
    text = f"{lift.title}: controlled tempo, full range of motion.{note}"
    return coach.sign(33401, text, tags, at)


def _coord(kind: int, pubkey: str, d: str) -> str:
    return f"{kind}:{pubkey}:{d}"


def _template(coach: DemoKey, d: str, at: int, sets: int, lifts: dict[str, Lift]) -> Event:
    title, members = TEMPLATES[d]
    tags = [["d", d], ["title", title], ["type", "strength"], ["rest_between_sets", "120"]]
    for d_ex in members:
        lift = lifts[d_ex]
        for n in range(1, sets + 1):
            value = "" if lift.unit in ("", "s") else f"{lift.start:g}"
            amount = (
                f"{lift.start:g}" if lift.unit == "s" else ("8" if lift.unit else f"{lift.start:g}")
            )
            tags.append(
                [
                    "exercise",
                    _coord(33401, coach.pubkey, d_ex),
                    RELAY,
                    value,
                    amount,
                    "7",
                    "normal",
                    str(n),
                ]
            )
    tags += [["t", "strength"], ["client", "POWR"]]
    return coach.sign(33402, f"{title}: {sets} working sets per exercise.", tags, at)


@dataclass
class _Athlete:
    key: DemoKey
    strength: float  # multiplier of the library's starting loads
    gain: float  # weekly progression, a fraction of the load
    schedule: tuple[str, ...]
    activity: tuple[str, str, float, int]
    miles: bool
    logged: list[Event] = field(default_factory=list)


def _round(value: float, unit: str) -> float:
    step = 2.5 if unit == "kg" else 5.0
    return max(step, round(value / step) * step)


def _strength(rng: random.Random, a: _Athlete, template: str, week: int, day: int,
              coach: DemoKey, lifts: dict[str, Lift]) -> Event:  # fmt: skip
    start = START + WEEK * (week + 1) + DAY * day + 3600 * rng.choice((6, 7, 12, 17, 18))
    start += 60 * rng.randrange(60)
    title, members = TEMPLATES[template]
    tags: list[list[str]] = [
        ["d", str(uuid.UUID(int=rng.getrandbits(128), version=4))],
        ["title", title],
        ["type", "strength"],
    ]
    sets: list[list[str]] = []
    for d_ex in members:
        lift = lifts[d_ex]
        coord = _coord(33401, coach.pubkey, d_ex)
        load = lift.start * a.strength * (1 + a.gain * week) * rng.uniform(0.97, 1.03)
        if lift.unit in ("kg", "lbs"):
            # Linear progression: one plate step every few weeks (lighter lifts less often).
            step = 2.5 if lift.unit == "kg" else 5.0
            base = lift.start * a.strength
            weight = _round(base, lift.unit) + step * (week // max(1, round(step * 10 / base)))
            if d_ex == members[0]:
                sets.append(
                    [
                        "exercise",
                        coord,
                        "",
                        f"{_round(weight * 0.5, lift.unit):g}",
                        "10",
                        "4",
                        "warmup",
                        "1",
                    ]
                )
            for n in range(1, 4):
                reps = max(3, 8 - (n == 3) * rng.randrange(3))
                rpe = min(10, 7 + n - 1 + rng.randrange(2))
                sets.append(
                    [
                        "exercise",
                        coord,
                        "",
                        f"{weight:g}",
                        str(reps),
                        str(rpe),
                        "normal",
                        str(n + (d_ex == members[0])),
                    ]
                )
        else:
            amount = max(1, round(load))
            for n in range(1, 4):
                sets.append(
                    ["exercise", coord, "", "0", str(amount - (n - 1)), "8", "normal", str(n)]
                )
    end = start + 60 * (40 + rng.randrange(30))
    tags += [["start", str(start)], ["end", str(end)], ["completed", "true"],
             ["template", _coord(33402, coach.pubkey, template), RELAY], *sets,
             ["t", "fitness"], ["t", "strength"], ["client", "POWR"]]  # fmt: skip
    return a.key.sign(1301, "", tags, end)


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _cardio(rng: random.Random, a: _Athlete, week: int, day: int) -> Event:
    verb, label, base_km, pace = a.activity
    start = START + WEEK * (week + 1) + DAY * day + 3600 * 7 + 60 * rng.randrange(90)
    km = base_km * (1 + 0.04 * week) * rng.uniform(0.85, 1.15)
    pace_s = pace * (1 - 0.005 * week) * rng.uniform(0.95, 1.05)
    seconds = km * pace_s
    unit = "mi" if a.miles else "km"
    shown = km / _KM_PER_MI if a.miles else km
    tags = [
        ["d", str(uuid.UUID(int=rng.getrandbits(128), version=4))],
        [
            "title",
            f"Morning {label.lower()}" if start % DAY < 12 * 3600 else f"Evening {label.lower()}",
        ],
        ["exercise", verb],
        ["distance", f"{shown:.2f}", unit],
        ["duration", _hms(seconds)],
        ["calories", str(round(seconds / 60 * rng.uniform(8, 11)))],
        ["elevation_gain", str(rng.randrange(5, 80)), "m"],
        ["avg_heart_rate", str(rng.randrange(125, 160))],
    ]
    per_unit = pace_s * (_KM_PER_MI if a.miles else 1)
    for n in range(1, int(shown) + 1):
        tags.append(["split", str(n), _hms(per_unit * n)])
    tags += [
        ["avg_pace", _hms(per_unit)[3:], f"min/{unit}"],
        ["workout_start_time", str(start)],
        ["source", "gps"],
        ["client", "RUNSTR", "1.2.0"],
        ["t", label],
    ]
    return a.key.sign(1301, f"{label} {shown:.1f} {unit}", tags, start + round(seconds))


def generate(*, athletes: int = 5, weeks: int = 12, seed: int = 1) -> list[Event]:
    """The demo events in publishing order (each after anything it refers to, deletions
    after their targets). Raises ``ValueError`` for fewer than one athlete or week."""
    if athletes < 1 or weeks < 1:
        raise ValueError("the demo needs at least one athlete and one week")
    rng = random.Random(seed)
    coach = DemoKey(seed, "coach")
    lifts = {lift.d: lift for lift in EXERCISES}
    events: list[Event] = [
        _exercise(coach, lift, START + i * 60) for i, lift in enumerate(EXERCISES)
    ]
    events += [_template(coach, d, START + DAY + i * 60, 3, lifts) for i, d in enumerate(TEMPLATES)]
    people = [
        _Athlete(
            key=DemoKey(seed, f"athlete-{n}"),
            strength=rng.uniform(0.8, 1.4),
            gain=rng.uniform(0.01, 0.03),
            schedule=_SCHEDULES[n % len(_SCHEDULES)],
            activity=_ACTIVITIES[n % len(_ACTIVITIES)],
            miles=n % 2 == 1,
        )
        for n in range(athletes)
    ]
    timed: list[Event] = []
    for week in range(weeks):
        for a in people:
            for day, template in zip((0, 2, 4), a.schedule, strict=True):
                a.logged.append(_strength(rng, a, template, week, day, coach, lifts))
            for day in (1, 5)[: 1 + (week % 2)]:
                a.logged.append(_cardio(rng, a, week, day))
    for a in people:
        timed += a.logged
        # A session logged twice by mistake, then deleted by its author.
        twin = a.logged[len(a.logged) // 2]
        again = a.key.sign(1301, twin["content"], twin["tags"], twin["created_at"] + 30)
        timed.append(again)
        timed.append(
            a.key.sign(
                5, "logged twice", [["e", again["id"]], ["k", "1301"]], again["created_at"] + 600
            )
        )
    end = START + WEEK * (weeks // 2 + 1)
    edited = ("barbell-back-squat", "lat-pulldown")
    timed += [
        _exercise(coach, lifts[d], end + i, " Brace before each rep.") for i, d in enumerate(edited)
    ]
    timed.append(_template(coach, "leg-day", end + 10, 4, lifts))
    timed.append(
        coach.sign(
            5,
            "retired from the library",
            [["a", _coord(33401, coach.pubkey, "nordic-curl")], ["k", "33401"]],
            end + 20,
        )
    )
    timed.sort(key=lambda e: (e["created_at"], e["id"]))
    return events + timed
