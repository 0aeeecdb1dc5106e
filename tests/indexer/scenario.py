"""A small world of signed fitness events with replacements, deletions (by id and by
address, before and after their targets, one from a foreign author), dangling references
and non-workouts; shared by the order-independence and crash-safety tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.signer import Keys

ALICE = Keys(101)
BOB = Keys(102)
CAROL = Keys(103)

Event = dict[str, Any]


def strength_exercise(
    keys: Keys,
    d: str,
    *,
    title: str | None = None,
    equipment: str = "barbell",
    weight_unit: str = "kg",
    set_types: str = "enum",
    hashtags: Sequence[str] = (),
    at: int = 100,
) -> Event:
    """A kind 33401 with the weight, reps, RPE and set type format POWR publishes (the
    title defaults to ``d``)."""
    return keys.sign(
        33401,
        "",
        [
            ["d", d],
            ["title", d if title is None else title],
            ["format", "weight", "reps", "rpe", "set_type"],
            ["format_units", weight_unit, "count", "0-10", set_types],
            ["equipment", equipment],
            *(["t", t] for t in hashtags),
        ],
        created_at=at,
    )


def _coord(kind: int, keys: Keys, d: str) -> str:
    return f"{kind}:{keys.pubkey}:{d}"


def exercise(keys: Keys, d: str, at: int, fmt: list[str], units: list[str]) -> Event:
    return keys.sign(
        33401,
        f"How to do {d}.",
        [
            ["d", d],
            ["title", d.replace("-", " ").title()],
            ["format", *fmt],
            ["format_units", *units],
            ["equipment", "barbell"],
            ["t", "legs"],
            ["t", "Strength"],
        ],
        created_at=at,
    )


def build() -> dict[str, Event]:
    """Named events; names say what each one is for."""
    strength = (["weight", "reps", "rpe", "set_type"], ["kg", "count", "0-10", "enum"])
    e: dict[str, Event] = {}
    e["squat_v1"] = exercise(ALICE, "squat", 100, *strength)
    # v2 changes the format: sets naming squat must be re-read through the new one.
    e["squat_v2"] = exercise(ALICE, "squat", 200, ["weight", "reps", "set_type"],
                             ["lbs", "count", "enum"])  # fmt: skip
    e["bench"] = exercise(ALICE, "bench", 100, *strength)
    e["plank"] = exercise(ALICE, "plank", 100, ["weight", "duration", "rpe", "set_type"],
                          ["kg", "seconds", "0-10", "enum"])  # fmt: skip
    e["bob_squat"] = exercise(BOB, "squat", 100, *strength)
    squat, bench = _coord(33401, ALICE, "squat"), _coord(33401, ALICE, "bench")
    plank, missing = _coord(33401, ALICE, "plank"), _coord(33401, ALICE, "deadlift")
    e["plan_v1"] = ALICE.sign(
        33402,
        "Leg day",
        [["d", "leg-day"], ["title", "Leg day"], ["type", "strength"],
         ["exercise", squat, "", "100", "5", "8", "normal"],
         ["exercise", squat, "", "100", "5", "8", "normal"],
         ["exercise", missing, "wss://relay.example", "140", "3", "9", "normal"]],
        created_at=150,
    )  # fmt: skip
    e["plan_v2"] = ALICE.sign(
        33402,
        "Superset",
        [["d", "leg-day"], ["title", "Leg day superset"], ["type", "superset"],
         ["rest_between_sets", "90"],
         ["exercise", squat, "", "100", "5", "8", "normal", "1"],
         ["exercise", bench, "", "60", "8", "7", "normal", "1"],
         ["exercise", squat, "", "100", "5", "8", "normal", "2"],
         ["exercise", bench, "", "60", "8", "7", "normal", "2"]],
        created_at=250,
    )  # fmt: skip
    plan = _coord(33402, ALICE, "leg-day")
    e["record_1"] = ALICE.sign(
        1301,
        "",
        [["d", "r1"], ["title", "Leg day"], ["type", "strength"],
         ["start", "1742703570000"], ["end", "1742707170000"], ["completed", "true"],
         ["template", plan, ""],
         ["exercise", squat, "", "100", "5", "8", "warmup", "1"],
         ["exercise", squat, "", "100", "5", "9", "normal", "2"],
         ["exercise", bench, "", "60", "8", "7", "failure", "1"],
         ["pr", f"{squat},max_weight,100"]],
        created_at=300,
    )  # fmt: skip
    e["record_2"] = ALICE.sign(
        1301,
        "",
        [["d", "r2"], ["title", "Core"], ["type", "circuit"],
         ["start", "1742800000"], ["end", "1742800600"], ["completed", "false"],
         ["exercise", plank, "", "0", "60", "6", "normal"],
         ["exercise", missing, "", "120", "3", "9", "normal"]],
        created_at=310,
    )  # fmt: skip
    e["record_legacy"] = ALICE.sign(
        33403,
        "",
        [["d", "old"], ["title", "Old"], ["type", "strength"],
         ["start", "1738000000"], ["end", "1738000900"], ["completed", "true"],
         ["exercise", bench, "", "50", "10", "7", "normal"]],
        created_at=90,
    )  # fmt: skip
    e["run"] = BOB.sign(
        1301,
        "Morning 5K",
        [["d", "run-1"], ["title", "Morning 5K"], ["exercise", "running"],
         ["distance", "5.0", "km"], ["duration", "00:28:15"], ["calories", "285"],
         ["split", "1", "00:05:38"], ["split_pace", "1", "338"], ["source", "gps"],
         ["t", "Running"]],
        created_at=320,
    )  # fmt: skip
    e["mail"] = CAROL.sign(
        1301,
        "From: a@b.example\r\nSubject: hi\r\n\r\nhello",
        [["p", BOB.pubkey], ["rcpt", "bob@b.example"]],
        created_at=330,
    )
    e["pack_v1"] = ALICE.sign(
        30004,
        "",
        [["d", "pack"], ["name", "Alice pack"], ["a", squat], ["a", plan, "wss://r.example"]],
        created_at=160,
    )
    e["pack_v2"] = ALICE.sign(
        30004,
        "",
        [["d", "pack"], ["name", "Alice pack"], ["a", bench], ["a", plank]],
        created_at=260,
    )
    # Deletions: bench by address (every version up to 400), record_2 by id, plan_v1 by id
    # alone (as POWR does), and Bob trying to delete Alice's squat.
    e["delete_bench"] = ALICE.sign(5, "", [["a", bench], ["k", "33401"]], created_at=400)
    e["delete_record_2"] = ALICE.sign(5, "", [["e", e["record_2"]["id"]]], created_at=401)
    e["delete_plan_v1"] = ALICE.sign(5, "", [["e", e["plan_v1"]["id"]]], created_at=402)
    e["foreign_delete"] = BOB.sign(5, "", [["e", e["squat_v2"]["id"]]], created_at=403)
    return e


EVENTS = build()
