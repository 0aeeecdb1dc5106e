"""Numbers, measures, durations, timestamps and paces read from tag text."""

from __future__ import annotations

import pytest

from indexer.units import (
    distance_to_m,
    normalise_set_type,
    parse_bool,
    parse_count,
    parse_duration,
    parse_number,
    parse_pace,
    parse_timestamp,
    weight_to_kg,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", 12.0),
        ("-2.5", -2.5),
        ("+3", 3.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        (" 7 ", 7.0),
        ("0", 0.0),
    ],
)
def test_parse_number_accepts_decimals(text: str, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "  ", "nan", "NaN", "inf", "-Infinity", "1e400", "1_000", "5,2", "١٢", "abc", "5kg"],
)
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


def test_parse_number_none() -> None:
    assert parse_number(None) is None


def test_parse_count() -> None:
    assert parse_count("3") == 3
    assert parse_count("0") == 0
    assert parse_count("2147483647") == 2147483647
    for text in ("2147483648", "-1", "1.0", "", "x", "+1"):
        assert parse_count(text) is None


def test_parse_bool() -> None:
    assert parse_bool("true") is True
    assert parse_bool("FALSE") is False
    assert parse_bool(" 1 ") is True
    assert parse_bool("0") is False
    assert parse_bool("yes") is None
    assert parse_bool("") is None
    assert parse_bool(None) is None


@pytest.mark.parametrize(
    ("value", "unit", "kg"),
    [
        (100.0, "kg", 100.0),
        (100.0, "", 100.0),
        (100.0, None, 100.0),
        (100.0, "lbs", 45.359237),
        (100.0, "LB", 45.359237),
        (-20.0, "kg", -20.0),
        (500.0, "g", 0.5),
    ],
)
def test_weight_to_kg(value: float, unit: str | None, kg: float) -> None:
    assert weight_to_kg(value, unit) == pytest.approx(kg)


def test_weight_unknown_unit() -> None:
    assert weight_to_kg(3.0, "plates") is None


@pytest.mark.parametrize(
    ("value", "unit", "metres"),
    [
        (5.0, "km", 5000.0),
        (400.0, "m", 400.0),
        (400.0, "meters", 400.0),
        (1.0, "mi", 1609.344),
        (2.0, "miles", 3218.688),
        (100.0, "ft", 30.48),
        (10.0, "", 10.0),
        (10.0, None, 10.0),
    ],
)
def test_distance_to_m(value: float, unit: str | None, metres: float) -> None:
    assert distance_to_m(value, unit) == pytest.approx(metres)


def test_distance_default_and_unknown() -> None:
    assert distance_to_m(5.0, None, "km") == 5000.0
    assert distance_to_m(5.0, "", "km") == 5000.0
    assert distance_to_m(5.0, "laps") is None


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("00:28:15", None, 1695.0),
        ("1:02:03", None, 3723.0),
        ("28:15", None, 1695.0),
        ("75:30", None, 4530.0),
        ("05:32.5", None, 332.5),
        ("1800", None, 1800.0),
        ("1800", "seconds", 1800.0),
        ("90.5", "s", 90.5),
        ("3", "minutes", 180.0),
        ("2", "min", 120.0),
        ("1", "hours", 3600.0),
        ("1500", "ms", 1.5),
        ("00:28:15", "minutes", 1695.0),
    ],
)
def test_parse_duration(text: str, unit: str | None, seconds: float) -> None:
    assert parse_duration(text, unit) == seconds


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("", None),
        ("-5", None),
        ("00:75", None),
        ("1:75:00", None),
        ("1:2:3:4", None),
        ("a:b", None),
        (":30", None),
        ("10", "count"),
        ("nan", None),
    ],
)
def test_parse_duration_rejects(text: str, unit: str | None) -> None:
    assert parse_duration(text, unit) is None


def test_parse_timestamp_seconds_and_ms() -> None:
    assert parse_timestamp("1706454000") == 1706454000.0
    assert parse_timestamp("1750811660000") == 1750811660.0
    assert parse_timestamp("1000000000000") == 1000000000000.0  # exactly 10^12 is seconds
    assert parse_timestamp("1706454000.5") == 1706454000.5
    assert parse_timestamp("") is None
    assert parse_timestamp("-1") is None
    assert parse_timestamp("soon") is None


@pytest.mark.parametrize(
    ("text", "unit", "s_per_km"),
    [
        ("05:39", "min/km", 339.0),
        ("05:39", None, 339.0),
        ("08:02", "min/mi", 482.0 / 1.609344),
        ("5.5", "min/km", 330.0),
        ("330", "s/km", 330.0),
        ("1:05:00", "min/km", 3900.0),
    ],
)
def test_parse_pace(text: str, unit: str | None, s_per_km: float) -> None:
    assert parse_pace(text, unit) == pytest.approx(s_per_km)


def test_parse_pace_rejects() -> None:
    assert parse_pace("05:39", "min/lap") is None
    assert parse_pace("fast", "min/km") is None
    assert parse_pace("-1", "min/km") is None


def test_normalise_set_type() -> None:
    assert [normalise_set_type(v) for v in ("warmup", "Normal", " DROP ", "failure")] == [
        "warmup",
        "normal",
        "drop",
        "failure",
    ]
    assert normalise_set_type("working") == "working"
    assert normalise_set_type("amrap") is None
    assert normalise_set_type("") is None


def test_very_long_digit_runs_are_refused_not_raised() -> None:
    digits = "1" * 5000
    assert parse_count(digits) is None
    assert parse_number(digits) is None  # 1e4999 is not finite
    assert parse_duration(digits + ":00") is None
    assert parse_duration("0:" + digits) is None
    assert parse_pace(digits + ":00", "min/km") is None
    assert parse_timestamp(digits) is None
