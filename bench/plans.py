"""EXPLAIN plans and SQL timings of the REQ shapes on a loaded database.

    python -m bench.plans --dsn postgresql://.../db [--runs 50] [--doc docs/benchmarks.md]

For each shape the relay's own SQL (relay.storage.sqlfilter.compile_query, as the relay runs
it with its event cache: ``created_at`` and ``id`` only; the JSON of events the cache does not
hold is then read by id and created_at, the ``raws`` statement of sql/queries/events.sql) is
run with values picked from the data (the most used hashtag, mention, author, the largest
contact list's follows ...), ``runs`` times on a relay-configured connection; p50/p99 and the
``EXPLAIN (ANALYZE, BUFFERS)`` plan of one run, the generic plan of the prepared statement as
the relay runs it (:func:`bench.explain.explain`), go into docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from bench.common import latency_summary
from bench.explain import explain
from relay.nostr.filters import parse_filter
from relay.nostr.limits import Limits
from relay.storage.partition import is_partitioned
from relay.storage.postgres import SESSION_SETTINGS
from relay.storage.sqlfilter import compile_query

_START, _END = "<!-- plans:start -->", "<!-- plans:end -->"
_ROOT = Path(__file__).resolve().parents[1]


async def _shapes(conn: asyncpg.Connection[Any]) -> dict[str, dict[str, Any]]:
    async def top(sql: str) -> Any:
        return await conn.fetchval(sql)

    async def most_used(letter: str) -> Any:
        return await conn.fetchval(
            "SELECT value FROM event_tags WHERE name = $1 GROUP BY value"
            " ORDER BY count(*) DESC LIMIT 1",
            letter,
        )

    tag, mention, replied = [await most_used(letter) for letter in "tpe"]
    author = (await top("SELECT pubkey FROM events WHERE kind = 33401 GROUP BY pubkey"
                        " ORDER BY count(*) DESC LIMIT 1")).hex()  # fmt: skip
    d = await top(f"SELECT d_tag FROM events WHERE kind = 33401 AND pubkey = '\\x{author}'"
                  " LIMIT 1")  # fmt: skip
    ids = [r[0].hex() for r in await conn.fetch("SELECT id FROM events ORDER BY seq DESC LIMIT 10")]
    # Times inside the main set (stored stream events are newer and leave a gap before them).
    middle = await top("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY created_at)"
                       " FROM events WHERE kind = 1")  # fmt: skip
    deep = await top("SELECT percentile_disc(0.02) WITHIN GROUP (ORDER BY created_at)"
                     " FROM events WHERE kind = 1")  # fmt: skip
    follows = await top("SELECT raw FROM events WHERE kind = 3"
                        " ORDER BY octet_length(raw) DESC LIMIT 1")  # fmt: skip
    followed = sorted({t[1] for t in msgspec.json.decode(follows)["tags"] if t[0] == "p"})
    return {
        "ids (10)": {"ids": ids},
        "authors + kinds, limit 100": {"authors": [author], "kinds": [1, 7], "limit": 100},
        "#e (most replied event)": {"#e": [replied], "limit": 100},
        "#p (most mentioned pubkey)": {"#p": [mention], "limit": 100},
        "#t (most used hashtag)": {"#t": [tag], "limit": 100},
        "#d": {"#d": [d]},
        "kind + since/until + limit": {
            "kinds": [1], "since": middle - 86_400 * 30, "until": middle, "limit": 100,
        },
        "addressable: kind + author + #d": {"kinds": [33401], "authors": [author], "#d": [d]},
        "exercise library: kind + author": {"kinds": [33401], "authors": [author]},
        "deep page: kind + until, limit 100": {"kinds": [1], "until": deep, "limit": 100},
        f"follow feed: {len(followed[:500])} authors x kinds [1, 1301], limit 100": {
            "authors": followed[:500], "kinds": [1, 1301], "limit": 100,
        },
    }  # fmt: skip


async def _run(dsn: str, runs: int) -> tuple[str, list[str]]:
    conn = await asyncpg.connect(dsn, server_settings=SESSION_SETTINGS)
    try:
        count = await conn.fetchval("SELECT count(*) FROM events")
        partitioned = await is_partitioned(conn)
        shapes = await _shapes(conn)
        rows, plans = [], []
        now = int(time.time())
        for name, raw in shapes.items():
            flt = parse_filter(raw, Limits())
            sql, args = compile_query(flt, now, flt.limit or 500, raw=False, keys=partitioned)[:2]
            await conn.fetch(sql, *args)
            seconds = []
            for _ in range(runs):
                started = time.perf_counter()
                got = await conn.fetch(sql, *args)
                seconds.append(time.perf_counter() - started)
            lat = latency_summary(seconds)
            rows.append(f"| {name} | {len(got)} | {lat['p50_ms']} | {lat['p99_ms']} |")
            plan = await explain(conn, sql, args, text=True)
            plans.append(f"#### {name}\n\n```\n{sql}\n```\n\n```\n"
                         + "\n".join(plan) + "\n```\n")  # fmt: skip
        head = (f"SQL of each REQ shape over {count:,} stored events, {runs} runs each on one"
                " relay-configured connection (`python -m bench.plans`), 2 shared cores; the"
                " plans are the generic plans the relay's prepared statements run with. The"
                " statements select `created_at` and `id`, as the relay runs them with its"
                " event cache; the JSON of events the cache does not hold is then read by"
                " id and created_at (the `raws` statement of sql/queries/events.sql)."
                "\n\n| shape | rows | SQL p50 ms | SQL p99 ms |\n|---|---|---|---|")  # fmt: skip
        return head + "\n" + "\n".join(rows), plans
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plans", description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--doc", default=str(_ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    table, plans = asyncio.run(_run(args.dsn, args.runs))
    section = "\n".join([_START, table, "", "<details><summary>Plans</summary>", "",
                         *plans, "</details>", _END])  # fmt: skip
    print(table)
    doc = Path(args.doc)
    text = doc.read_text() if doc.exists() else "# Query plans\n"
    if _START in text:
        text = text[: text.index(_START)] + section + text[text.index(_END) + len(_END) :]
    else:
        text += "\n## Query plans\n\n" + section + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
