"""``fitrelay report``: a self-contained HTML page of the research views, to look at.

Its charts are inline SVG (:mod:`indexer.chart`) and it loads nothing else, so it opens in
any browser, offline. It shows, over the last ``weeks`` UTC weeks with a workout record:
weekly volume per muscle group (``fitness.weekly_load_by_muscle_group``), the best e1RM of
the most trained canonical lifts (``fitness.weekly_progression``), workout records per week
(``fitness.weekly_training_frequency``), and headline figures. Under each chart is the SQL
that gives its figures, to reproduce it.

The queries (``sql/queries/report.sql``) read only views of schema ``fitness``, in one
read-only transaction, so a ``fitrelay_reader`` DSN is enough. The page depends only on the
data: the same events give the same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape

import asyncpg

from indexer.chart import PALETTE, Series, bar_chart, line_chart
from indexer.pseudonym import Pseudonymizer
from relay.storage.migrate import Conn
from relay.storage.queries import load_queries

__all__ = [
    "Figure",
    "Headline",
    "Lift",
    "Report",
    "figures",
    "gather_report",
    "render_report",
    "resolve_athlete",
    "write_report",
]

_Q = load_queries("report.sql")

_SESSION = {"application_name": "fitrelay report", "TimeZone": "UTC", "jit": "off"}


@dataclass(frozen=True, slots=True)
class Headline:
    athletes: int
    workouts: int
    working_sets: int
    first_set: dt.datetime | None
    last_set: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Lift:
    """One charted lift: a canonical exercise with one equipment, and its weekly bests."""

    canonical_id: str
    name: str
    equipment: str | None
    series: list[Series]


@dataclass(slots=True)
class Report:
    """What the page shows; ``weeks`` are the Mondays charted (ISO dates): the last ones
    asked for, from the first week with a record on."""

    athlete: str | None
    """The label of the one athlete shown, None for all."""
    athlete_key: str | None
    """The pubkey the SQL shown selects (a placeholder when pseudonymous)."""
    weeks: list[str]
    headline: Headline
    pseudonymous: bool
    athletes: list[tuple[str, str]]
    """Label and full pubkey (or pseudonym) of each athlete shown."""
    muscle_volume: list[Series] = field(default_factory=list)
    lifts: list[Lift] = field(default_factory=list)
    frequency: list[Series] = field(default_factory=list)


def _shown(pubkey: str, pseudonymizer: Pseudonymizer | None) -> str:
    return pseudonymizer.hex(pubkey) if pseudonymizer else pubkey


def _label(pubkey: str, pseudonymizer: Pseudonymizer | None) -> str:
    return _shown(pubkey, pseudonymizer)[:12]


async def resolve_athlete(
    conn: Conn, athlete: str, pseudonymizer: Pseudonymizer | None = None
) -> str:
    """The pubkey an ``--athlete`` value names: a pubkey, its pseudonym (with the secret) or
    a unique prefix of either (at least 8 hex digits); ``ValueError`` otherwise."""
    wanted = athlete.strip().lower()
    pubkeys = [str(r["pubkey"]) for r in await conn.fetch(_Q["athletes"])]
    names = {p: {p, pseudonymizer.hex(p)} if pseudonymizer else {p} for p in pubkeys}
    exact = [p for p, known in names.items() if wanted in known]
    if exact:
        return exact[0]
    if len(wanted) >= 8:
        prefixed = [p for p, known in names.items() if any(k.startswith(wanted) for k in known)]
        if len(prefixed) == 1:
            return prefixed[0]
        if prefixed:
            raise ValueError(f"--athlete {athlete}: {len(prefixed)} athletes match; say more")
    raise ValueError(f"--athlete {athlete}: no athlete with a workout record has this key")


def _week_list(last: dt.date, count: int) -> list[dt.date]:
    return [last - dt.timedelta(weeks=count - 1 - i) for i in range(count)]


async def gather_report(
    conn: Conn,
    *,
    weeks: int,
    athlete: str | None = None,
    lifts: int = 3,
    pseudonymizer: Pseudonymizer | None = None,
) -> Report:
    """Read the figures of the report; run inside one read-only transaction."""
    pubkey = await resolve_athlete(conn, athlete, pseudonymizer) if athlete else None
    span = await conn.fetchrow(_Q["weeks"], pubkey)
    assert span is not None
    first, last = span["first_week"], span["last_week"]
    days = [d for d in _week_list(last, weeks) if d >= first] if last else []
    first_day, last_day = (days[0], days[-1]) if days else (dt.date.min, dt.date.min)
    args = (pubkey, first_day, last_day)
    row = await conn.fetchrow(_Q["headline"], *args)
    assert row is not None
    headline = Headline(
        int(row["athletes"]),
        int(row["workouts"]),
        int(row["working_sets"]),
        row["first_set"],
        row["last_set"],
    )
    names = [str(r["pubkey"]) for r in await conn.fetch(_Q["athletes"])]
    labels = {p: _label(p, pseudonymizer) for p in names if pubkey is None or p == pubkey}
    # One colour per athlete in every chart, whoever else a chart shows.
    colours = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(labels)}
    report = Report(
        _label(pubkey, pseudonymizer) if pubkey else None,
        ("<athlete>" if pseudonymizer else pubkey) if pubkey else None,
        [d.isoformat() for d in days],
        headline,
        pseudonymizer is not None,
        [(labels[p], _shown(p, pseudonymizer)) for p in labels],
    )
    muscles: dict[str, dict[str, float]] = {}
    for r in await conn.fetch(_Q["muscle_load"], *args):
        if r["volume_kg"] is not None:
            muscles.setdefault(str(r["muscle"]), {})[r["week"].isoformat()] = r["volume_kg"]
    report.muscle_volume = [Series(m, v) for m, v in muscles.items()]
    for lift in await conn.fetch(_Q["main_lifts"], *args, lifts):
        per: dict[str, dict[str, float]] = {}
        rows = await conn.fetch(_Q["progression"], *args, lift["canonical_id"], lift["equipment"])
        for r in rows:
            per.setdefault(str(r["pubkey"]), {})[r["week"].isoformat()] = r["best_e1rm_epley_kg"]
        report.lifts.append(
            Lift(
                str(lift["canonical_id"]),
                str(lift["canonical_name"]),
                lift["equipment"],
                [Series(labels[p], v, colours[p]) for p, v in per.items()],
            )
        )
    sessions: dict[str, dict[str, float]] = {}
    for r in await conn.fetch(_Q["frequency"], *args):
        sessions.setdefault(str(r["pubkey"]), {})[r["week"].isoformat()] = float(r["sessions"])
    report.frequency = [Series(labels[p], v, colours[p]) for p, v in sessions.items()]
    return report


def _where(report: Report) -> str:
    if not report.weeks:
        return "WHERE false  -- no week has a workout record"
    weeks = f"week BETWEEN '{report.weeks[0]}' AND '{report.weeks[-1]}'"
    athlete = f"pubkey = '{report.athlete_key}' AND " if report.athlete_key else ""
    return f"WHERE {athlete}{weeks}"


def _figure(figure: Figure) -> str:
    return (
        f'<figure id="{figure.name}">\n'
        + figure.svg
        + f"\n<figcaption>{figure.caption}</figcaption>\n"
        + f'<pre class="sql"><code>{escape(figure.sql)}</code></pre>\n</figure>'
    )


def _lift_title(lift: Lift) -> str:
    return f"{lift.name} ({lift.equipment})" if lift.equipment else lift.name


def _time(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "none"


_STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.n { text-align: right; }
figure { margin: 2rem 0; }
pre.sql { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
""".strip()


@dataclass(frozen=True, slots=True)
class Figure:
    """One chart: a file name for it, the SVG, a caption (HTML) and the SQL of its figures."""

    name: str
    svg: str
    caption: str
    sql: str


def figures(report: Report) -> list[Figure]:
    """The report's charts, in page order."""
    where = _where(report)
    out = [
        Figure(
            "muscle-volume",
            bar_chart(
                "Weighted volume per muscle group",
                report.weeks,
                report.muscle_volume,
                y_label="kg (weighted volume)",
                source="fitness.weekly_load_by_muscle_group",
            ),
            "A set counts under every muscle group its exercise trains, weighted by the"
            " contribution (bench press: chest 1, triceps 0.5), so the segments of a week"
            " overlap in sets; the sum is over the athletes shown.",
            "SELECT week, muscle, sum(weighted_volume_kg::numeric)::double precision"
            " AS volume_kg\nFROM fitness.weekly_load_by_muscle_group\n"
            f"{where}\nGROUP BY week, muscle ORDER BY muscle, week;",
        )
    ]
    for lift in report.lifts:
        equipment = f"'{lift.equipment}'" if lift.equipment else "NULL"
        match = "=" if lift.equipment else "IS NOT DISTINCT FROM"
        out.append(
            Figure(
                "-".join(
                    ["e1rm", lift.canonical_id, *([lift.equipment] if lift.equipment else [])]
                ),
                line_chart(
                    f"{_lift_title(lift)}: best e1RM per week",
                    report.weeks,
                    lift.series,
                    y_label="kg (Epley, 1 to 12 reps)",
                    source="fitness.weekly_progression",
                    from_zero=False,
                ),
                "One line per athlete: the week's best Epley estimate,"
                " weight &times; (1 + reps / 30), over sets of 1 to 12 reps.",
                "SELECT pubkey, week, best_e1rm_epley_kg\nFROM fitness.weekly_progression\n"
                f"{where}\n  AND canonical_id = '{lift.canonical_id}'"
                f" AND equipment {match} {equipment}\nORDER BY pubkey, week;",
            )
        )
    out.append(
        Figure(
            "frequency",
            bar_chart(
                "Workout records per week",
                report.weeks,
                report.frequency,
                y_label="sessions",
                source="fitness.weekly_training_frequency",
            ),
            "Workout records of every kind (strength and cardio), stacked by athlete.",
            "SELECT pubkey, week, sessions, strength_sessions\n"
            f"FROM fitness.weekly_training_frequency\n{where}\nORDER BY pubkey, week;",
        )
    )
    return out


def render_report(report: Report) -> str:
    """The page, as text."""
    h = report.headline
    who = f"Athlete {escape(report.athlete)}" if report.athlete else "All athletes"
    if report.weeks:
        span = (
            f"the {len(report.weeks)} UTC weeks (Mondays) {report.weeks[0]} to {report.weeks[-1]}"
        )
    else:
        span = "no workout record yet"
    charts = figures(report)
    volume, *lifts, frequency = charts
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>fitrelay report</title>',
        f"<style>\n{_STYLE}\n</style></head>",
        "<body>",
        "<h1>fitrelay report</h1>",
        f"<p>{who}; {span}. Warm-up sets never"
        " count. Every figure comes from a view of schema <code>fitness</code>"
        " (docs/schema.md); the SQL under each chart gives it.</p>",
        '<table class="headline">',
        "<tr><th>figure</th><th>value</th><th>from</th></tr>",
        f'<tr><td>athletes</td><td class="n" data-figure="athletes">{h.athletes}</td>'
        "<td>fitness.weekly_training_frequency</td></tr>",
        f'<tr><td>workout records</td><td class="n" data-figure="workouts">{h.workouts}</td>'
        "<td>fitness.weekly_training_frequency (Σ sessions)</td></tr>",
        '<tr><td>working sets</td><td class="n" data-figure="working_sets">'
        f"{h.working_sets}</td><td>fitness.strength_sets (NOT is_warmup)</td></tr>",
        f'<tr><td>first set</td><td data-figure="first_set">{_time(h.first_set)}</td>'
        "<td>fitness.strength_sets</td></tr>",
        f'<tr><td>last set</td><td data-figure="last_set">{_time(h.last_set)}</td>'
        "<td>fitness.strength_sets</td></tr>",
        "</table>",
        "<h2>Weekly volume per muscle group</h2>",
        _figure(volume),
        "<h2>Estimated one-repetition maximum</h2>",
    ]
    if not lifts:
        parts.append("<p>No lift with an e1RM in these weeks.</p>")
    parts += [_figure(f) for f in lifts]
    parts += [
        "<h2>Training frequency</h2>",
        _figure(frequency),
        "<h2>Athletes</h2>",
        "<table><tr><th>label</th><th>"
        + ("pseudonym (HMAC of the pubkey)" if report.pseudonymous else "pubkey")
        + "</th></tr>",
    ]
    parts += [
        f"<tr><td>{escape(label)}</td><td><code>{escape(key)}</code></td></tr>"
        for label, key in report.athletes
    ]
    parts += ["</table>", "</body>", "</html>", ""]
    return "\n".join(parts)


async def write_report(
    dsn: str,
    *,
    weeks: int,
    athlete: str | None = None,
    lifts: int = 3,
    pseudonymizer: Pseudonymizer | None = None,
) -> tuple[str, Report]:
    """Connect, gather the figures in one read-only snapshot, and return the page."""
    conn = await asyncpg.connect(dsn, server_settings=_SESSION)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            report = await gather_report(
                conn, weeks=weeks, athlete=athlete, lifts=lifts, pseudonymizer=pseudonymizer
            )
    finally:
        await conn.close()
    return render_report(report), report
