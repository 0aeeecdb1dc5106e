"""map_set and split_set_number: reading one exercise tag's values (§9.4-§9.6)."""

from __future__ import annotations

import pytest

from indexer.model import SetValues
from indexer.sets import map_set, split_set_number

STRENGTH = ("weight", "reps", "rpe", "set_type")
STRENGTH_UNITS = ("kg", "count", "0-10", "enum")


def test_format_mapping() -> None:
    assert map_set(("80", "8", "7", "normal"), STRENGTH, STRENGTH_UNITS) == SetValues(
        weight_kg=80.0,
        weight_raw="80",
        weight_unit="kg",
        reps=8.0,
        rpe=7.0,
        set_type="normal",
        set_type_raw="normal",
        mapped_by="format",
    )


def test_default_mapping_without_format() -> None:
    assert map_set(("100", "4", "10", "failure")) == SetValues(
        weight_kg=100.0,
        weight_raw="100",
        reps=4.0,
        rpe=10.0,
        set_type="failure",
        set_type_raw="failure",
        mapped_by="default",
    )


def test_no_values() -> None:
    assert map_set(()) == SetValues(mapped_by="none")
    assert map_set((), STRENGTH, STRENGTH_UNITS).mapped_by == "none"


def test_keyword_anchors_when_rpe_left_out() -> None:
    # POWR RN: weight 0, reps 8, no rpe, set_type at values index 2 (tag index 5).
    expected = SetValues(
        weight_kg=0.0,
        weight_raw="0",
        reps=8.0,
        set_type="normal",
        set_type_raw="normal",
        mapped_by="keywords",
    )
    assert map_set(("0", "8", "normal")) == expected
    with_format = map_set(("0", "8", "normal"), STRENGTH, STRENGTH_UNITS)
    assert with_format.mapped_by == "keywords"
    assert (with_format.weight_kg, with_format.weight_unit, with_format.reps) == (0.0, "kg", 8.0)
    assert (with_format.rpe, with_format.set_type) == (None, "normal")


def test_keyword_in_place_keeps_format_mapping() -> None:
    values = map_set(("warmup", "8", "7", "warmup"))
    assert values.mapped_by == "default"
    assert (values.weight_kg, values.weight_raw, values.set_type) == (None, "warmup", "warmup")


def test_keyword_with_format_lacking_set_type() -> None:
    values = map_set(("0", "8", "normal"), ("weight", "reps"), ("kg", "count"))
    assert values == SetValues(
        weight_kg=0.0,
        weight_raw="0",
        weight_unit="kg",
        reps=8.0,
        set_type="normal",
        set_type_raw="normal",
        mapped_by="keywords",
    )


def test_keyword_after_extra_values_and_fields_after_set_type() -> None:
    fmt = ("weight", "reps", "set_type", "duration")
    values = map_set(("20", "x", "5", "drop", "45"), fmt, ("kg", "count", "enum", "seconds"))
    assert values.mapped_by == "keywords"
    assert (values.weight_kg, values.reps, values.set_type, values.duration_s) == (
        20.0,
        None,
        "drop",
        45.0,
    )


def test_duration_format_second_slot_is_seconds() -> None:
    fmt = ("weight", "duration", "rpe", "set_type")
    values = map_set(("0", "60", "7", "normal"), fmt, ("kg", "seconds", "0-10", "enum"))
    assert (values.weight_kg, values.reps, values.duration_s, values.rpe) == (0.0, None, 60.0, 7.0)
    minutes = map_set(("0", "2"), ("weight", "duration"), ("kg", "minutes"))
    assert minutes.duration_s == 120.0


def test_reps_slot_with_time_unit_is_a_duration() -> None:
    values = map_set(("0", "45", "8", "normal"), STRENGTH, ("kg", "seconds", "0-10", "enum"))
    assert (values.reps, values.duration_s) == (None, 45.0)


def test_bodyweight_negative_and_non_numeric() -> None:
    empty = map_set(("", "10", "7", "normal"), STRENGTH, STRENGTH_UNITS)
    assert (empty.weight_kg, empty.weight_raw) == (None, "")
    zero = map_set(("0", "10", "7", "normal"), STRENGTH, STRENGTH_UNITS)
    assert (zero.weight_kg, zero.weight_raw) == (0.0, "0")
    assisted = map_set(("-20", "8", "7", "normal"), STRENGTH, STRENGTH_UNITS)
    assert assisted.weight_kg == -20.0
    junk = map_set(("heavy", "lots", "7.5", "normal"), STRENGTH, STRENGTH_UNITS)
    assert (junk.weight_kg, junk.weight_raw, junk.reps, junk.rpe) == (None, "heavy", None, 7.5)


def test_pounds_and_unknown_weight_unit() -> None:
    lbs = map_set(("135", "5"), ("weight", "reps"), ("lbs", "count"))
    assert lbs.weight_kg == pytest.approx(61.23496995)
    assert lbs.weight_unit == "lbs"
    odd = map_set(("3", "5"), ("weight", "reps"), ("plates", "count"))
    assert (odd.weight_kg, odd.weight_raw, odd.weight_unit) == (None, "3", "plates")


def test_unknown_set_type_keeps_raw() -> None:
    values = map_set(("80", "8", "7", "amrap"), STRENGTH, STRENGTH_UNITS)
    assert (values.set_type, values.set_type_raw, values.mapped_by) == (None, "amrap", "format")
    working = map_set(("80", "8", "7", "Working"))
    assert (working.set_type, working.set_type_raw) == ("working", "Working")


def test_cardio_fields() -> None:
    fmt = ("distance", "duration", "heartrate")
    values = map_set(("5", "00:25:00", "150"), fmt, ("km", "seconds", "bpm"))
    assert (values.distance_m, values.duration_s, values.heart_rate) == (5000.0, 1500.0, 150.0)
    no_unit = map_set(("400",), ("distance",), ())
    assert no_unit.distance_m == 400.0


def test_short_and_long_value_lists() -> None:
    short = map_set(("80",), STRENGTH, STRENGTH_UNITS)
    assert (short.weight_kg, short.reps, short.set_type) == (80.0, None, None)
    long = map_set(("80", "8", "7", "normal", "extra", "more"), STRENGTH, STRENGTH_UNITS)
    assert (long.weight_kg, long.set_type, long.mapped_by) == (80.0, "normal", "format")


def test_format_units_shorter_than_format() -> None:
    values = map_set(("80", "8", "7", "normal"), STRENGTH, ("kg",))
    assert (values.weight_kg, values.weight_unit, values.reps) == (80.0, "kg", 8.0)


@pytest.mark.parametrize(
    ("values", "rest", "number"),
    [
        (("80", "8", "7", "normal", "1"), ("80", "8", "7", "normal"), 1),
        (("0", "8", "normal", "2"), ("0", "8", "normal"), 2),
        (("80", "8", "7", "", "3"), ("80", "8", "7", ""), 3),
        (("80", "8", "7", "normal"), ("80", "8", "7", "normal"), None),
        (("3", "10", "60"), ("3", "10", "60"), None),
        (("0", "8", "normal"), ("0", "8", "normal"), None),
        (("80", "8", "7", "normal", "x"), ("80", "8", "7", "normal", "x"), None),
        (("80", "8", "7", "normal", "1.5"), ("80", "8", "7", "normal", "1.5"), None),
        ((), (), None),
        (("5",), ("5",), None),
    ],
)
def test_split_set_number_without_format(
    values: tuple[str, ...], rest: tuple[str, ...], number: int | None
) -> None:
    assert split_set_number(values) == (rest, number)


def test_split_set_number_with_format() -> None:
    fmt = ("weight", "duration", "rpe", "set_type", "heartrate")
    # Five format values: the fifth is a heart rate, not a set number.
    assert split_set_number(("0", "60", "7", "normal", "150"), fmt) == (
        ("0", "60", "7", "normal", "150"),
        None,
    )
    assert split_set_number(("0", "60", "7", "normal", "150", "2"), fmt) == (
        ("0", "60", "7", "normal", "150"),
        2,
    )
    assert split_set_number(("0", "8", "normal", "1"), STRENGTH) == (("0", "8", "normal"), 1)
    assert split_set_number(("0", "8", "3"), STRENGTH) == (("0", "8", "3"), None)
    assert split_set_number(("20", "5"), ("weight",)) == (("20",), 5)


BODYWEIGHT_SET = ("", "10", "7", "normal")


def test_blank_weight_of_a_performed_bodyweight_set_is_zero() -> None:
    values = map_set(BODYWEIGHT_SET, STRENGTH, STRENGTH_UNITS, equipment="bodyweight")
    assert (values.weight_kg, values.weight_raw, values.reps) == (0.0, "", 10.0)
    # Equipment as an exercise's tag may be spelled (the parser lowercases it already).
    spelled = map_set(("  ", "10"), ("weight", "reps"), ("lbs", "count"), equipment=" Bodyweight")
    assert (spelled.weight_kg, spelled.weight_raw) == (0.0, "  ")


def test_blank_weight_elsewhere_stays_unknown() -> None:
    prescribed = map_set(
        BODYWEIGHT_SET, STRENGTH, STRENGTH_UNITS, equipment="bodyweight", prescribed=True
    )
    assert (prescribed.weight_kg, prescribed.weight_raw) == (None, "")  # "fill in"
    barbell = map_set(BODYWEIGHT_SET, STRENGTH, STRENGTH_UNITS, equipment="barbell")
    assert (barbell.weight_kg, barbell.weight_raw) == (None, "")  # not recorded
    unresolved = map_set(BODYWEIGHT_SET)
    assert (unresolved.weight_kg, unresolved.weight_raw) == (None, "")
    no_equipment = map_set(BODYWEIGHT_SET, STRENGTH, STRENGTH_UNITS, equipment=None)
    assert no_equipment.weight_kg is None


def test_bodyweight_only_changes_blank_weights() -> None:
    for raw, expected in (("0", 0.0), ("-20", -20.0), ("12.5", 12.5), ("heavy", None)):
        values = map_set((raw, "8"), ("weight", "reps"), ("kg", "count"), equipment="bodyweight")
        assert (values.weight_kg, values.weight_raw) == (expected, raw)
    # A blank in another field is not a weight.
    reps = map_set(("0", ""), ("weight", "reps"), ("kg", "count"), equipment="bodyweight")
    assert reps.reps is None
    # An unknown weight unit reads a blank like "0": unknown too.
    odd = map_set(("", "5"), ("weight", "reps"), ("plates", "count"), equipment="bodyweight")
    assert (odd.weight_kg, odd.weight_raw) == (None, "")
