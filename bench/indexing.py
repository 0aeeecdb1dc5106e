"""python -m bench.indexing: how fast the fitness indexer catches up and rebuilds.

For each size, a fitness-only signed set (:data:`bench.generate.FITNESS_MIX`: exercises,
templates, records in the NIP-101e and RUNSTR dialects, new versions and a few deletions) is
generated once and cached, imported with ``fitrelay import`` into a scratch database, and then

  catch-up   a cold ``Indexer.catch_up`` (what ``fitrelay index`` does first) from an empty
             checkpoint over every stored event
  reindex    ``fitrelay reindex``'s rebuild over the same tables, in one transaction
  row        (``--row-by-row``) the same catch-up one entry at a time, the path small live
             batches take, for comparison

Each figure is fitness log entries per second of wall time. After each run a digest of every
fitness table is taken; the runs must agree, or the benchmark fails.

    python -m bench.indexing --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import process_cpu
from bench.generate import FITNESS_MIX, GEN_VERSION, generate_events
from bench.relays import ROOT, create_database, drop_database, run_fitrelay_import
from indexer.follower import Indexer, reindex
from relay.nostr.kinds import FITNESS_KINDS
from relay.storage.migrate import migrate

__all__ = ["ensure_fitness_set", "main", "table_digest"]

_TABLES = (
    "exercises",
    "exercise_hashtags",
    "exercise_media",
    "templates",
    "template_sets",
    "workouts",
    "workout_sets",
    "workout_splits",
    "workout_prs",
    "non_workouts",
    "lists",
    "list_items",
    "index_errors",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_fitness_set(n: int, seed: int, authors: int, cache_dir: Path) -> Path:
    """The cached ``fitness-<n>-<seed>-<authors>.jsonl`` (generated first when missing)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"fitness-{n}-{seed}-{authors}.jsonl"
    meta_path = path.with_suffix(".meta.json")
    want = {"version": GEN_VERSION, "events": n, "seed": seed, "authors": authors}
    if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == want:
        return path
    workers = os.cpu_count() or 1
    log(f"generating {n:,} fitness events ({workers} signing processes)")
    started = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        generate_events(n, seed, authors, out, workers=workers, mix=FITNESS_MIX)
    tmp.replace(path)
    meta_path.write_text(json.dumps(want) + "\n")
    log(f"generated in {time.perf_counter() - started:.1f} s")
    return path


async def table_digest(conn: asyncpg.Connection[Any]) -> dict[str, str]:
    """An md5 of every fitness table's rows in a stable order (equal digests, equal tables)."""
    out = {}
    for table in _TABLES:
        out[table] = await conn.fetchval(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(r, E'\\n' ORDER BY r)), '')"
            f" FROM (SELECT t::text AS r FROM fitness.{table} t) s"
        )
    return out


async def _fitness_entries(conn: asyncpg.Connection[Any]) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM events WHERE kind = ANY($1::integer[])", sorted(FITNESS_KINDS)
        )
    )


async def _reset(conn: asyncpg.Connection[Any]) -> None:
    """Empty fitness tables and a checkpoint at 0: a cold indexer."""
    await conn.execute("UPDATE fitness.indexer_state SET last_seq = 0")
    for table in reversed(_TABLES):
        await conn.execute(f"TRUNCATE fitness.{table} CASCADE")
    await conn.execute("VACUUM (ANALYZE) fitness.workouts, fitness.workout_sets")


async def _catch_up(dsn: str, batch_size: int, bulk_min: int) -> dict[str, Any]:
    """A cold catch-up timed, with the CPU seconds of this process (the indexer and its
    parser thread) and of the PostgreSQL backend serving it."""
    conn = await asyncpg.connect(dsn)
    try:
        await _reset(conn)
        await conn.execute(
            "INSERT INTO fitness.indexer_state (name, last_seq) VALUES ('main', 0)"
            " ON CONFLICT (name) DO UPDATE SET last_seq = 0"
        )
        indexer = Indexer(dsn, batch_size=batch_size, bulk_min=bulk_min)
        backend = conn.get_server_pid()
        pg0, cpu0 = process_cpu([backend]).get(backend, 0.0), time.process_time()
        started = time.perf_counter()
        await indexer.catch_up(conn)
        seconds = time.perf_counter() - started
        client = time.process_time() - cpu0
        backend_cpu = process_cpu([backend]).get(backend, 0.0) - pg0
    finally:
        await conn.close()
    events = indexer.stats.events_indexed + indexer.stats.removals_applied
    return {
        "seconds": round(seconds, 2),
        "events": events,
        "events_per_s": round(events / seconds),
        "indexer_cpu_s": round(client, 2),
        "postgres_cpu_s": round(backend_cpu, 2),
        "cpu_ms_per_event": round(1000 * (client + backend_cpu) / max(events, 1), 3),
    }


async def _digest(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await table_digest(conn)
    finally:
        await conn.close()


async def bench_size(args: argparse.Namespace, n: int) -> dict[str, Any]:
    path = ensure_fitness_set(n, args.seed, args.authors, args.cache_dir)
    name = f"fitrelay_bench_indexing_{n}"
    dsn = await create_database(args.dsn, name)
    result: dict[str, Any] = {"generated_events": n}
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        log(f"{n:,}: fitrelay import")
        imported = run_fitrelay_import(dsn, path, args.cache_dir / f"import-{n}.log", ROOT)
        if imported["status"] != 0:
            raise SystemExit(f"import failed: {imported['output_tail']}")
        result["import_seconds"] = imported["seconds"]
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("VACUUM (ANALYZE)")
            entries = await _fitness_entries(conn)
        finally:
            await conn.close()
        result["fitness_events"] = entries
        log(f"{n:,}: {entries:,} stored fitness events; cold catch-up")
        result["catch_up"] = await _catch_up(dsn, args.batch_size, 1)
        log(f"{n:,}: catch-up {result['catch_up']}")
        reference = await _digest(dsn)
        started, cpu0 = time.perf_counter(), time.process_time()
        report = await reindex(dsn, batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        result["reindex"] = {
            "seconds": round(seconds, 2),
            "events": report.events,
            "events_per_s": round(report.events / seconds),
            "cpu_s": round(time.process_time() - cpu0, 2),
        }
        log(f"{n:,}: reindex {report.events / seconds:,.0f} events/s ({seconds:.1f} s)")
        if await _digest(dsn) != reference:
            raise SystemExit("reindex built other tables than the catch-up")
        if args.row_by_row:
            result["row_by_row"] = await _catch_up(dsn, args.batch_size, args.batch_size + 1)
            log(f"{n:,}: row by row {result['row_by_row']}")
            if await _digest(dsn) != reference:
                raise SystemExit("the row-by-row path built other tables than the batched one")
        result["tables_equal"] = True
        result["rows"] = {t: int(d.split(":")[0]) for t, d in reference.items()}
    finally:
        if not args.keep:
            await drop_database(args.dsn, name)
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.indexing", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="events generated")
    p.add_argument(
        "--dsn",
        default=os.environ.get(
            "FITRELAY_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="an administrative DSN: scratch databases are created and dropped through it",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--authors", type=int, default=2_000)
    p.add_argument("--batch-size", type=int, default=5_000, help="log entries per batch")
    p.add_argument("--row-by-row", action="store_true", help="also time the per-entry path")
    p.add_argument("--keep", action="store_true", help="keep the scratch databases")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    p.add_argument("--output", type=Path, help="write the figures as JSON here too")
    return p


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    return {str(n): await bench_size(args, n) for n in args.sizes}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    results = asyncio.run(_run(args))
    out = {
        "command": "python -m bench.indexing " + " ".join(argv or sys.argv[1:]),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "sizes": results,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
