"""``fitrelay report`` on the demo data set, run as a real process under ``fitrelay_reader``:
the page parses, each chart holds the series and values of its view's rows (summed here in
Python, not by the report's queries), and the headline figures match counts of the tables.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from indexer.chart import Series, bar_chart, line_chart, nice_ticks
from indexer.pseudonym import Pseudonymizer
from tests.conftest import READER, as_user
from tests.server.test_cli_archive import run

DEMO = ["--athletes", "3", "--weeks", "6", "--seed", "7"]
"""The data set of these tests and of the committed example, docs/report-example.html."""
EXAMPLE = Path(__file__).parents[2] / "docs" / "report-example.html"
SHOWN = 4
"""Weeks asked for in most tests: fewer than the demo has, so the window is cut."""


class Page(HTMLParser):
    """The charts, series, data points and headline figures a report emits."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict[str, Any]] = []
        self.figures: dict[str, str] = {}
        self._series: dict[str, Any] | None = None
        self._figure: str | None = None
        self._name = ""
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag not in ("meta", "line", "rect", "polyline", "circle"):
            self.stack.append(tag)
        if tag == "svg":
            self.charts.append({"kind": a["data-chart"], "source": a["data-source"], "series": {}})
        elif tag == "g" and "data-series" in a:
            self._series = self.charts[-1]["series"].setdefault(a["data-series"], {})
            self._name = a["data-series"]
            if "fill" in a:
                self.charts[-1].setdefault("colours", {})[self._name] = a["fill"]
        elif tag == "rect" and "data-x" in a:
            assert self._series is not None
            self._series[a["data-x"]] = float(a["data-y"])
        elif tag == "polyline":
            assert self._series is not None
            self.charts[-1].setdefault("colours", {})[self._name] = a["stroke"]
            for point in a["data-points"].split():
                week, value = point.split("=")
                self._series[week] = float(value)
        elif tag == "td" and "data-figure" in a:
            self._figure = a["data-figure"]

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("meta", "line", "rect", "polyline", "circle"):
            assert self.stack.pop() == tag, f"</{tag}> closes <{self.stack}>"
        if tag == "g":
            self._series = None
        if tag == "td":
            self._figure = None

    def handle_data(self, data: str) -> None:
        if self._figure is not None:
            self.figures[self._figure] = data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == [], "unclosed elements"
    return page


def monday(at: dt.datetime) -> dt.date:
    day = at.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


async def shown_weeks(
    db: asyncpg.Connection[Any], count: int, pubkey: str | None = None
) -> list[str]:
    rows = await db.fetch(
        "SELECT pubkey, coalesce(started_at, created_at) AS at FROM fitness.workouts"
    )
    weeks = {monday(r["at"]) for r in rows if pubkey is None or r["pubkey"] == pubkey}
    last = max(weeks)
    return [
        d.isoformat()
        for d in (last - dt.timedelta(weeks=count - 1 - i) for i in range(count))
        if d >= min(weeks)
    ]


def approx(expected: dict[str, dict[str, float]]) -> Any:
    return {k: pytest.approx(v, rel=1e-12) for k, v in expected.items()}


async def expected_charts(
    db: asyncpg.Connection[Any], weeks: list[str], pubkey: str | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, Any]]:
    """Muscle volume per muscle and week, sessions per athlete (label) and week, and every
    lift's best e1RM per athlete and week, from the views' rows and the tables."""
    mine = "($1::text IS NULL OR pubkey = $1)"
    volume: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in await db.fetch(
        f"SELECT * FROM fitness.weekly_load_by_muscle_group WHERE {mine}", pubkey
    ):
        if r["week"].isoformat() in weeks and r["weighted_volume_kg"] is not None:
            volume[r["muscle"]][r["week"].isoformat()] += r["weighted_volume_kg"]
    sessions: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in await db.fetch(
        f"SELECT pubkey, coalesce(started_at, created_at) AS at FROM fitness.workouts WHERE {mine}",
        pubkey,
    ):
        week = monday(r["at"]).isoformat()
        if week in weeks:
            sessions[r["pubkey"][:12]][week] += 1
    lifts: dict[tuple[str, str | None], dict[str, dict[str, float]]] = defaultdict(dict)
    sets: dict[tuple[str, str | None], int] = defaultdict(int)
    for r in await db.fetch(f"SELECT * FROM fitness.weekly_progression WHERE {mine}", pubkey):
        week = r["week"].isoformat()
        if week in weeks and r["best_e1rm_epley_kg"] is not None:
            key = (r["canonical_id"], r["equipment"])
            lifts[key].setdefault(r["pubkey"][:12], {})[week] = r["best_e1rm_epley_kg"]
            sets[key] += r["sets"]
    return volume, sessions, {"lifts": lifts, "sets": sets}


async def demo_database(db_dsn: str, tmp_path: Path) -> None:
    done = run(["demo", "--db-dsn", db_dsn, *DEMO], tmp_path)
    assert done.returncode == 0, done.stderr.decode()


def report(db_dsn: str, tmp_path: Path, *args: str) -> Page:
    done = run(["report", "--db-dsn", as_user(db_dsn, READER), "-o", "r.html", *args], tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    return parse(tmp_path / "r.html")


async def test_the_charts_hold_the_views_rows(
    db: asyncpg.Connection[Any], db_dsn: str, tmp_path: Path
) -> None:
    await demo_database(db_dsn, tmp_path)
    page = report(db_dsn, tmp_path, "--weeks", str(SHOWN))
    weeks = await shown_weeks(db, SHOWN)
    assert len(weeks) == SHOWN
    volume, sessions, progression = await expected_charts(db, weeks)

    kinds = [(c["kind"], c["source"]) for c in page.charts]
    assert kinds == [
        ("bar", "fitness.weekly_load_by_muscle_group"),
        *[("line", "fitness.weekly_progression")] * 3,
        ("bar", "fitness.weekly_training_frequency"),
    ]
    muscles, *lifts, frequency = page.charts
    assert len(volume) > 3 and muscles["series"] == approx(volume)
    assert frequency["series"] == sessions
    # The three lifts with the most working sets (that have an e1RM), most first; ties go
    # to the canonical id, then the equipment (none first).
    ranked = sorted(
        progression["sets"].items(),
        key=lambda kv: (-kv[1], kv[0][0], kv[0][1] is not None, kv[0][1] or ""),
    )
    assert len(ranked) > 3
    for chart, (key, _) in zip(lifts, ranked[:3], strict=True):
        assert chart["series"] == approx(progression["lifts"][key])
        assert chart["series"]
    # An athlete has one colour in every chart, also where another athlete is missing.
    assert any(len(c["series"]) < len(frequency["series"]) for c in lifts)
    for chart in [*lifts, frequency]:
        for name, colour in chart["colours"].items():
            assert colour == frequency["colours"][name], name
    assert len(set(frequency["colours"].values())) == len(frequency["colours"])

    # Headline figures against counts of the tables.
    rows = await db.fetch(
        "SELECT w.pubkey, coalesce(w.started_at, w.created_at) AS at,"
        " (SELECT count(*) FROM fitness.workout_sets s WHERE s.workout_event_id = w.event_id"
        "  AND s.set_type IS DISTINCT FROM 'warmup') AS working FROM fitness.workouts w"
    )
    inside = [r for r in rows if monday(r["at"]).isoformat() in weeks]
    assert len(inside) < len(rows)
    assert page.figures["athletes"] == str(len({r["pubkey"] for r in inside}))
    assert page.figures["workouts"] == str(len(inside))
    assert page.figures["working_sets"] == str(sum(r["working"] for r in inside))
    lifted = [r["at"] for r in inside if r["working"]]
    assert page.figures["first_set"] == min(lifted).strftime("%Y-%m-%d %H:%M UTC")
    assert page.figures["last_set"] == max(lifted).strftime("%Y-%m-%d %H:%M UTC")


async def test_one_athlete_by_prefix_or_pseudonym(
    db: asyncpg.Connection[Any], db_dsn: str, tmp_path: Path
) -> None:
    await demo_database(db_dsn, tmp_path)
    pubkeys = sorted({r["pubkey"] for r in await db.fetch("SELECT pubkey FROM fitness.workouts")})
    chosen = pubkeys[1]
    page = report(db_dsn, tmp_path, "--athlete", chosen[:10], "--weeks", "12")
    weeks = await shown_weeks(db, 12, chosen)
    volume, sessions, _ = await expected_charts(db, weeks, chosen)
    muscles, *lifts, frequency = page.charts
    assert muscles["series"] == approx(volume)
    assert set(frequency["series"]) == {chosen[:12]} and frequency["series"] == sessions
    assert lifts and all(set(c["series"]) == {chosen[:12]} for c in lifts)
    assert page.figures["athletes"] == "1"

    secret = tmp_path / "secret"
    secret.write_bytes(b"a report secret of some length")
    alias = Pseudonymizer(b"a report secret of some length").hex(chosen)
    page = report(
        db_dsn, tmp_path, "--pseudonymize", "--secret-file", str(secret), "--athlete", alias
    )
    text = (tmp_path / "r.html").read_text()
    assert not any(p in text or p[:12] in text for p in pubkeys)
    assert set(page.charts[-1]["series"]) == {alias[:12]}

    unknown = run(
        ["report", "--db-dsn", as_user(db_dsn, READER), "-o", "x.html", "--athlete", "ab" * 32],
        tmp_path,
    )
    assert unknown.returncode == 2 and b"no athlete" in unknown.stderr
    short = run(
        ["report", "--db-dsn", as_user(db_dsn, READER), "-o", "x.html", "--athlete", chosen[:7]],
        tmp_path,
    )  # fewer than 8 digits is never taken for a prefix
    assert short.returncode == 2 and b"no athlete" in short.stderr
    assert not (tmp_path / "x.html").exists()


async def test_the_committed_example_is_what_the_command_writes(
    db_dsn: str, tmp_path: Path
) -> None:
    await demo_database(db_dsn, tmp_path)
    page = report(db_dsn, tmp_path, "--svg-dir", "charts")
    again = "regenerate: fitrelay demo " + " ".join(DEMO) + " && fitrelay report -o "
    again += "docs/report-example.html --svg-dir docs/report-example"
    assert (tmp_path / "r.html").read_text() == EXAMPLE.read_text(), again
    written = {p.name: p.read_text() for p in (tmp_path / "charts").iterdir()}
    committed = {p.name: p.read_text() for p in EXAMPLE.with_suffix("").iterdir()}
    assert written == committed, again
    # Each chart file is the page's chart of that name.
    assert len(written) == len(page.charts)
    html = EXAMPLE.read_text()
    for name, svg in written.items():
        assert f'<figure id="{name.removesuffix(".svg")}">\n{svg}' in html


def test_charts_scale_to_their_data() -> None:
    assert nice_ticks(87) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0) == [0, 0.2, 0.4, 0.6, 0.8, 1]  # an empty chart still has an axis
    weeks = ["2025-01-06", "2025-01-13", "2025-01-20"]
    series = [Series("a", {weeks[0]: 30.0, weeks[2]: 10.0}), Series("b", {weeks[0]: 50.0})]
    bars = bar_chart("t <&>", weeks, series, y_label="kg")
    assert bars.count("<rect x=") == 3 and "t &lt;&amp;&gt;" in bars
    # The first week's stack reaches the top tick (80 of 0..80): its upper edge is the top.
    tops = [float(y) for y in re.findall(r'<rect x="[^"]+" y="([^"]+)"[^>]*data-x', bars)]
    assert len(tops) == 3
    assert math.isclose(min(tops), 34)
    lines = line_chart("t", weeks, series, y_label="kg")
    assert lines.count("<polyline") == 2 and lines.count("<circle") == 3
    assert 'data-points="2025-01-06=30.0 2025-01-20=10.0"' in lines


def test_a_line_chart_may_start_above_zero() -> None:
    assert nice_ticks(130, bottom=97) == [90, 100, 110, 120, 130]
    weeks = ["2025-01-06", "2025-01-13"]
    lines = line_chart(
        "t", weeks, [Series("a", {weeks[0]: 100.0, weeks[1]: 130.0})], y_label="kg", from_zero=False
    )
    labels = re.findall(r'text-anchor="end" dominant-baseline="middle">([^<]+)<', lines)
    assert labels == ["90", "100", "110", "120", "130"]
    # 130 is the top tick: its dot sits on the plot's upper edge.
    assert re.findall(r'<circle cx="[^"]+" cy="([^"]+)"', lines)[1] == "34"


async def test_an_empty_database_gives_empty_charts(db_dsn: str, tmp_path: Path) -> None:
    page = report(db_dsn, tmp_path)
    assert [c["kind"] for c in page.charts] == ["bar", "bar"]  # no lift has an e1RM
    assert all(c["series"] == {} for c in page.charts)
    assert page.figures["athletes"] == page.figures["workouts"] == "0"
    assert "no workout record yet" in (tmp_path / "r.html").read_text()
