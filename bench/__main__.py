"""python -m bench: benchmark fitrelay (and nostr-relay 1.14 beside it) on local PostgreSQL.

One run: generate (or reuse) signed events; build the expected-answer model and the queries;
then for each relay under test: [fitrelay only] time `fitrelay import` of the main file into a
scratch database; create a fresh database, start the relay, and measure in turn

  ingest      every main event published by P connections with W in flight (this also
              loads the database for the queries); with --tuned, then VACUUM ANALYZE
  stopwait    stream events published by connections with one EVENT in flight, for T s
  query       9 REQ shapes, their mix and a follow feed, C connections each sending one
              REQ at a time and CLOSE after its EOSE, straight after the load (with
              --tuned, after a warm-up); time to EOSE and queries/s, every answer checked
  pagination  load N notes of one new author (200000; a smaller count when loading them all
              would exceed --pagination-load-seconds), then walk them back with `until`,
              L per page: time to EOSE of the first and the last tenth of the pages, every
              note checked to come exactly once and in order
  fanout      S live subscriptions, a publisher, publish-to-delivery latency
  idle        N idle connections, the relay's RSS before and after

and stop it and drop its database. Results go to bench/results/<timestamp>.json and, as
tables, to docs/benchmarks.md between markers for the event count (reruns replace them).

With --profile, py-spy records the fitrelay process tree during ingest, stopwait, query,
pagination and fanout (bench/results/<timestamp>/fitrelay-<phase>.txt, collapsed stacks),
and the tables gain the functions where the relay's time goes in each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import sys
import time
import tomllib
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.common import (
    COMPRESSION_ENV,
    cpu_seconds,
    process_cpu,
    raise_nofile,
    rss_kb,
    scrape_metrics,
)
from bench.fanout import run_fanout
from bench.generate import PaginationSet, ensure_dataset, ensure_pagination_set, stream_size
from bench.idle import run_idle
from bench.ingest import partition_by_author, publish
from bench.lag import IndexerLag
from bench.model import Model, decode_events
from bench.pagination import decode_notes, load_notes, walk
from bench.profile import PROFILED_PHASES, SAMPLE_RATE, Recording, find_py_spy, py_spy_version
from bench.query import SHAPES, expected_answers, make_queries, run_shape
from bench.relays import (
    RelayProcess,
    RelayUnavailable,
    backend_pids,
    create_database,
    database_size,
    drop_database,
    ensure_nostr_relay_venv,
    find_strfry,
    run_fitrelay_import,
    start_fitrelay,
    start_nostr_relay,
    start_strfry,
    vacuum_analyze,
)
from bench.standby import streaming_cluster

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("import", "ingest", "stopwait", "query", "pagination", "fanout", "idle")
DEFAULTS: dict[str, Any] = {
    "events": 100_000,
    "stopwait_seconds": 20.0,
    "query_seconds": 20.0,
    "queries_per_shape": 1_000,
    "subscribers": 1_000,
    "fanout_events": 100,
    "fanout_workers": 2,
    "idle": 5_000,
    "pagination_events": 200_000,
}
QUICK: dict[str, Any] = {
    "events": 5_000,
    "stopwait_seconds": 3.0,
    "query_seconds": 2.0,
    "queries_per_shape": 40,
    "subscribers": 100,
    "fanout_events": 20,
    "fanout_workers": 1,
    "idle": 500,
    "pagination_events": 5_000,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = p.add_argument_group("scale")
    size.add_argument("--events", type=int, help="main events to generate and load (100000)")
    size.add_argument(
        "--large",
        action="store_true",
        help="1,000,000 events; nostr-relay loads ~300 events/s, so add --against none"
        " unless an hour for it is fine",
    )
    size.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (about a minute once nostr-relay is installed): 5k events, 100"
        " subscribers, 500 idle connections, a few seconds per phase; explicit flags win",
    )
    size.add_argument("--seed", type=int, default=1, help="generator and query seed (1)")
    size.add_argument("--authors", type=int, default=2_000, help="distinct authors (2000)")
    size.add_argument("--gen-workers", type=int, help="signing processes (default: number of CPUs)")
    size.add_argument(
        "--generate-only", action="store_true", help="generate (or check) the cache and exit"
    )

    who = p.add_argument_group("relays and database")
    who.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL DSN with permission to create databases; each relay gets a fresh"
        " database fitrelay_bench_<run>_<relay> on that server (default: %(default)s)",
    )
    who.add_argument(
        "--against",
        choices=["nostr-relay", "strfry", "both", "none"],
        default="nostr-relay",
        help="the relays to compare with: nostr-relay 1.14 from PyPI, installed with pip into"
        " bench/.cache/nostr-relay-venv on first use (default); strfry, built by hand with"
        " ../shared/peers/strfry/build.sh (see --strfry-bin); both (strfry first: the"
        " ratios are to it); or none",
    )
    who.add_argument(
        "--strfry-bin",
        type=Path,
        metavar="FILE",
        help="the strfry binary (default: $STRFRY_BIN); without one, strfry is reported as"
        " unavailable and the other relays run",
    )
    who.add_argument(
        "--tuned",
        action="store_true",
        help="VACUUM ANALYZE after the load and warm up before the REQ shapes; by default the"
        " bench measures what a user meets: the queries run on the fresh process straight"
        " after the load",
    )
    who.add_argument(
        "--as-user",
        action="store_true",
        help="the default (no VACUUM ANALYZE, no warm-up); kept for older command lines",
    )
    who.add_argument(
        "--indexer",
        choices=["off", "on", "both"],
        default="off",
        help="fitrelay's fitness indexer: off for pure relay figures (default), on, or both"
        " (two fitrelay runs)",
    )
    who.add_argument(
        "--workers",
        type=int,
        default=1,
        help="fitrelay processes sharing one port (`relay.workers`; default 1)",
    )
    who.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="run on a throwaway primary of the harness's own with N hot standbys streaming"
        " from it (pg_basebackup -R; 0: the primary alone, for the baseline) instead of"
        " --dsn, and point fitrelay's reads at them (`db.read_dsns`); fitrelay only",
    )
    who.add_argument(
        "--compression",
        action="store_true",
        help="permessage-deflate: fitrelay with `relay.compression = true` and clients that"
        " offer it (default: off, as on loopback it only costs CPU)",
    )
    who.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default: all); query needs ingest",
    )
    who.add_argument(
        "--keep-databases", action="store_true", help="leave the benchmark databases behind"
    )
    who.add_argument(
        "--fitrelay-src",
        type=Path,
        default=ROOT,
        metavar="DIR",
        help="run fitrelay from this checkout, e.g. a `git worktree` of another commit for a"
        " before/after comparison (default: this one, uncommitted changes included)",
    )

    who.add_argument(
        "--fitrelay-config",
        type=Path,
        metavar="FILE",
        help="TOML merged over fitrelay's generated config, e.g. a [policy] preset and"
        " [relay.rate_limits] to measure their cost (default: none)",
    )

    ing = p.add_argument_group("ingest")
    ing.add_argument("--publishers", type=int, default=8, help="publisher connections (8)")
    ing.add_argument("--window", type=int, default=16, help="EVENTs in flight per publisher (16)")
    ing.add_argument(
        "--stopwait-publishers", type=int, default=8, help="stop-and-wait publishers (8)"
    )
    ing.add_argument(
        "--stopwait-seconds",
        type=float,
        help="stop-and-wait duration (20); it also ends when the stream events (a fifth of"
        " --events, at least 2000) run out",
    )

    q = p.add_argument_group("queries")
    q.add_argument("--query-concurrency", type=int, default=8, help="query connections (8)")
    q.add_argument("--queries-per-shape", type=int, help="queries per shape (1000; mixed: of each)")
    q.add_argument("--query-seconds", type=float, help="time limit per shape (20)")

    pg = p.add_argument_group("deep pagination")
    pg.add_argument(
        "--pagination-events",
        type=int,
        help="notes of one author to load and walk back through (200000; --quick 5000)",
    )
    pg.add_argument("--pagination-limit", type=int, default=500, help="limit per page (500)")
    pg.add_argument(
        "--pagination-load-seconds",
        type=float,
        default=180.0,
        help="load at most what fits in this many seconds at the relay's rate over the first"
        " 5000 notes, and say so (180; 0 = load them all)",
    )

    f = p.add_argument_group("fan-out and idle connections")
    f.add_argument("--subscribers", type=int, help="live subscriptions (1000)")
    f.add_argument(
        "--subs-per-conn",
        type=int,
        default=1,
        help="subscriptions per subscriber connection (1); raise it when file limits bite",
    )
    f.add_argument("--fanout-events", type=int, help="events published to the subscribers (100)")
    f.add_argument(
        "--fanout-interval", type=float, default=0.05, help="pause after each OK, seconds (0.05)"
    )
    f.add_argument("--fanout-workers", type=int, help="subscriber processes (2)")
    f.add_argument("--idle", type=int, help="idle connections to open (5000)")

    out = p.add_argument_group("output")
    out.add_argument(
        "--cache-dir",
        type=Path,
        default=ROOT / "bench" / ".cache",
        help="generated events and nostr-relay's virtual environment (bench/.cache)",
    )
    out.add_argument(
        "--results-dir",
        type=Path,
        default=ROOT / "bench" / "results",
        help="<timestamp>.json per run, and <timestamp>/ with the relays' logs and configs",
    )
    out.add_argument(
        "--doc",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="the Markdown file whose tables a run replaces (docs/benchmarks.md)",
    )
    out.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    out.add_argument(
        "--profile",
        action="store_true",
        help="record fitrelay with py-spy (pip install 'fitrelay[bench]') during ingest,"
        " stopwait, query, pagination and fanout; the sampler shares the cores, so a"
        " profiled run's figures are lower than an unprofiled one's",
    )
    out.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS.json",
        help="only re-render the tables of a saved run into --doc (and print them)",
    )
    return p


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    preset = QUICK if args.quick else DEFAULTS
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.large:
        args.events = 1_000_000
    if args.replicas is not None and (args.replicas < 0 or args.against != "none"):
        raise SystemExit("--replicas N needs N >= 0 and --against none (fitrelay only)")
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}")
    args.phase_list = phases
    args.fitrelay_src = args.fitrelay_src.resolve()
    args.py_spy = None
    args.profile_info = None
    if args.profile:
        args.py_spy = find_py_spy()
        args.profile_info = {
            "py_spy": args.py_spy,
            "rate_hz": SAMPLE_RATE,
            "phases": [x for x in PROFILED_PHASES if x in phases],
        }
        if args.py_spy is None:
            args.profile_info["missing"] = (
                "py-spy was not found beside the Python running the harness or on PATH"
                " (pip install 'fitrelay[bench]'); this run has no profiles"
            )
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Workload:
    """What every relay gets: the events, their partitioning, the queries and answers."""

    def __init__(
        self,
        args: argparse.Namespace,
        main: Path,
        stream: Path,
        pagination: PaginationSet | None = None,
    ) -> None:
        started = time.perf_counter()
        self.lines = main.read_bytes().splitlines()
        events = decode_events(self.lines)
        self.ids = [e.id for e in events]
        self.parts = partition_by_author([e.pubkey for e in events], args.publishers)
        self.stream_lines = stream.read_bytes().splitlines()
        stream_events = decode_events(self.stream_lines)
        self.stream_ids = [e.id for e in stream_events]
        self.stream_parts = partition_by_author(
            [e.pubkey for e in stream_events], args.stopwait_publishers
        )
        self.model = Model(events)
        self.queries = make_queries(events, args.seed, args.queries_per_shape)
        self.pagination = pagination
        self.pagination_lines: list[bytes] = []
        self.pagination_ids: list[str] = []
        self.pagination_times: list[int] = []
        if pagination is not None:
            self.pagination_lines = pagination.path.read_bytes().splitlines()
            self.pagination_ids, self.pagination_times = decode_notes(self.pagination_lines)
        self._answers: dict[tuple[int, int], dict[str, list[list[str]]]] = {}
        self.seconds = time.perf_counter() - started
        self.stored = len(self.model)

    def answers(self, default_limit: int, max_limit: int) -> dict[str, list[list[str]]]:
        key = (default_limit, max_limit)
        if key not in self._answers:
            self._answers[key] = expected_answers(self.model, self.queries, *key)
        return self._answers[key]


_EVENT_CACHE = {
    "hits": "fitrelay_event_cache_hits_total",
    "misses": "fitrelay_event_cache_misses_total",
    "mirror_answers": "fitrelay_mirror_answers_total",
    "mirror_declined": "fitrelay_mirror_declined_total",
}


def _event_cache_counters(relay: RelayProcess) -> dict[str, float] | None:
    """The event cache's hit and miss counts and the mirror's answered and declined REQs so
    far, as the relay's /metrics reports them; None when it exports none."""
    if relay.metrics is None:
        return None
    try:
        values = scrape_metrics(relay.metrics, _EVENT_CACHE.values())
    except OSError:
        return None
    return {key: values[name] for key, name in _EVENT_CACHE.items()}


async def _phase(
    relay: RelayProcess,
    out: dict[str, Any],
    name: str,
    body: Callable[[], Awaitable[Any]],
    admin_dsn: str,
    profile: tuple[str, Path] | None = None,
) -> Any:
    """Run one measurement, adding the CPU seconds spent meanwhile by the relay (process
    and children), by the PostgreSQL backends serving its database, and by this client's
    main process (not the fan-out workers).

    With ``profile`` = (py-spy executable, file), py-spy records the relay's process tree
    from before the body starts until after it ends, and ``out["profiles"][name]`` gets the
    summary of what it wrote."""
    log(f"{relay.name}: {name}")
    recording = None
    if profile is not None:
        recording = await asyncio.to_thread(Recording.start, profile[0], relay.pid, profile[1])
        if recording.error:
            log(f"{relay.name}: {name}: profile: {recording.error}")
    try:
        pg0 = process_cpu(await backend_pids(admin_dsn, relay.database))
        cpu0, client0, started = cpu_seconds(relay.pid), time.process_time(), time.perf_counter()
        value = await body()
        out.setdefault("phase_seconds", {})[name] = round(time.perf_counter() - started, 1)
        if isinstance(value, dict):
            value["relay_cpu_s"] = round(cpu_seconds(relay.pid) - cpu0, 2)
            value["client_cpu_s"] = round(time.process_time() - client0, 2)
            pg1 = process_cpu(await backend_pids(admin_dsn, relay.database))
            value["postgres_cpu_s"] = round(sum(v - pg0.get(p, 0.0) for p, v in pg1.items()), 2)
            value["relay_rss_mb_after"] = round(rss_kb(relay.pid) / 1024, 1)
    finally:
        if recording is not None:
            summary = await asyncio.to_thread(recording.stop)
            out.setdefault("profiles", {})[name] = summary
            log(
                f"{relay.name}: {name}: profile of {summary['samples']:,} samples in"
                f" {recording.path}" + (f" ({summary['error']})" if "error" in summary else "")
            )
    return value


async def bench_relay(
    kind: str, args: argparse.Namespace, work: Workload, run_id: str, run_dir: Path, main: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    slug = kind.replace("+", "_").replace("-", "_")
    phases = args.phase_list

    def profile(phase: str) -> tuple[str, Path] | None:
        """py-spy and the file for ``phase`` when this run profiles it."""
        if args.py_spy is None or not kind.startswith("fitrelay"):
            return None
        if phase not in PROFILED_PHASES:
            return None
        return (args.py_spy, run_dir / f"{slug}-{phase}.txt")

    if kind.startswith("fitrelay") and "import" in phases:
        name = f"fitrelay_bench_{run_id}_{slug}_import"
        log(f"{kind}: import ({len(work.lines):,} events with `fitrelay import`)")
        dsn = await create_database(args.dsn, name)
        started = time.perf_counter()
        try:
            out["import"] = run_fitrelay_import(
                dsn, main, run_dir / f"{slug}-import.log", args.fitrelay_src
            )
        finally:
            if not args.keep_databases:
                await drop_database(args.dsn, name)
        out.setdefault("phase_seconds", {})["import"] = round(time.perf_counter() - started, 1)
        log(f"{kind}: import {out['import']['events_per_s']:,} events/s")

    venv = None
    if kind == "nostr-relay":
        log("nostr-relay: preparing its virtual environment")
        venv, versions = ensure_nostr_relay_venv(args.cache_dir, run_dir / "nostr-relay-pip.log")
        out["version"] = versions.get("nostr-relay")
        out["packages"] = versions
    strfry = find_strfry(args.strfry_bin) if kind == "strfry" else None
    name = f"fitrelay_bench_{run_id}_{slug}"
    dsn = "" if strfry else await create_database(args.dsn, name)
    started = time.perf_counter()
    if strfry is not None:
        relay = start_strfry(strfry, run_dir)
    elif venv is not None:
        relay = start_nostr_relay(venv, dsn, name, run_dir)
    else:
        extra = tomllib.loads(args.fitrelay_config.read_text()) if args.fitrelay_config else {}
        if getattr(args, "standbys", None):
            extra.setdefault("db", {})["read_dsns"] = [sb.dsn(name) for sb in args.standbys]
            # The reads must reach the replicas: without the in-memory mirror.
            extra.setdefault("relay", {})["mirror_events"] = 0
        relay = start_fitrelay(
            dsn,
            name,
            run_dir,
            indexer=kind.endswith("indexer"),
            src=args.fitrelay_src,
            workers=args.workers,
            compression=args.compression,
            extra=extra or None,
        )
    out["start_seconds"] = round(time.perf_counter() - started, 2)
    out["relay"] = {"url": relay.url, "pid": relay.pid, **relay.info}
    out["limits"] = {"default_limit": relay.default_limit, "max_limit": relay.max_limit}
    out["rss_mb_at_start"] = round(rss_kb(relay.pid) / 1024, 1)
    log(f"{kind}: listening on {relay.url} (pid {relay.pid})")
    try:
        if "ingest" in phases:

            async def ingest() -> dict[str, Any]:
                load = publish(relay.url, work.lines, work.ids, work.parts, window=args.window)
                if not kind.endswith("indexer"):
                    r = await load
                    return {**r.summary(), "answered": r.answered}
                async with IndexerLag(dsn) as lag:  # the indexer's lag behind the commits
                    r = await load
                return {**r.summary(), "answered": r.answered, "indexer_lag": lag.summary()}

            out["ingest"] = await _phase(relay, out, "ingest", ingest, args.dsn, profile("ingest"))
            log(
                f"{kind}: ingest {out['ingest']['events_per_s']:,} events/s,"
                f" p50 {out['ingest']['ok_latency'].get('p50_ms')} ms"
            )
            if dsn:
                out["database_bytes"] = await database_size(dsn)
            if dsn and args.tuned:
                out["vacuum_analyze_seconds"] = round(await vacuum_analyze(dsn), 1)
        if "stopwait" in phases:

            async def stopwait() -> dict[str, Any]:
                r = await publish(
                    relay.url,
                    work.stream_lines,
                    work.stream_ids,
                    work.stream_parts,
                    window=1,
                    time_limit=args.stopwait_seconds,
                )
                return r.summary()

            out["stopwait"] = await _phase(
                relay, out, "stopwait", stopwait, args.dsn, profile("stopwait")
            )
            log(f"{kind}: stop-and-wait {out['stopwait']['events_per_s']:,} events/s")
        if "query" in phases and "ingest" in phases:
            answers = work.answers(relay.default_limit, relay.max_limit)

            async def queries() -> dict[str, Any]:
                shapes: dict[str, Any] = {}
                counted = _event_cache_counters(relay)
                # Not measured: the relay opens its pooled connections and prepares its
                # statements on first use, which would land in the first shape's p99.
                warm = args.query_concurrency * 4 if args.tuned else 0
                if warm:
                    r = await run_shape(
                        relay.url,
                        "warm-up",
                        work.queries["mixed"][-warm:],
                        answers["mixed"][-warm:],
                        concurrency=args.query_concurrency,
                        time_limit=args.query_seconds,
                    )
                    shapes["warm_up"] = r.summary()
                for shape in SHAPES:
                    r = await run_shape(
                        relay.url,
                        shape,
                        work.queries[shape],
                        answers[shape],
                        concurrency=args.query_concurrency,
                        time_limit=args.query_seconds,
                        explain=work.model.explain,
                        cause=work.model.cause,
                    )
                    shapes[shape] = r.summary()
                    s = shapes[shape]
                    log(
                        f"{kind}: {shape}: {s['queries_per_s']} q/s,"
                        f" p50 {s['eose_latency'].get('p50_ms')} ms,"
                        f" exact {s['exact']}/{s['queries']}"
                    )
                if counted is not None:
                    after = _event_cache_counters(relay) or {}
                    shapes["event_cache"] = {k: after.get(k, 0) - v for k, v in counted.items()}
                return shapes

            out["query"] = await _phase(relay, out, "query", queries, args.dsn, profile("query"))
            if getattr(args, "replicas", None) is not None and relay.metrics:
                out["reads"] = _reads_by_target(relay.metrics)
        if "pagination" in phases and work.pagination is not None:
            notes = work.pagination_lines
            log(f"{kind}: pagination: loading {len(notes):,} notes of one author")
            load_started = time.perf_counter()
            load = await load_notes(
                relay.url,
                notes,
                work.pagination_ids,
                publishers=args.publishers,
                window=args.window,
                budget=args.pagination_load_seconds,
                log=lambda message: log(f"{kind}: pagination: {message}"),
            )
            if dsn and args.tuned:
                load["vacuum_analyze_seconds"] = round(await vacuum_analyze(dsn), 1)
            seconds = round(time.perf_counter() - load_started, 1)
            out.setdefault("phase_seconds", {})["pagination load"] = seconds
            log(
                f"{kind}: pagination: loaded {load['loaded']:,} notes,"
                f" {load['events_per_s']:,} events/s"
            )
            pubkey = work.pagination.pubkey
            expected = work.pagination_ids[: load["loaded"]]
            expected_times = work.pagination_times[: load["loaded"]]

            async def pagination() -> dict[str, Any]:
                r = await walk(
                    relay.url,
                    pubkey,
                    expected,
                    expected_times,
                    limit=args.pagination_limit,
                    max_limit=relay.max_limit,
                )
                return {"load": load, **r.summary()}

            out["pagination"] = await _phase(
                relay, out, "pagination", pagination, args.dsn, profile("pagination")
            )
            w = out["pagination"]
            log(
                f"{kind}: pagination: {w['pages']} pages, first p50"
                f" {w['first_pages']['p50_ms']} ms, last p50 {w['last_pages']['p50_ms']} ms,"
                f" {'exact' if w['exact'] else str(w['mismatches']) + ' mismatches'},"
                f" {w['errors']} errors"
            )
        if "fanout" in phases:

            async def fanout() -> dict[str, Any]:
                r = await run_fanout(
                    relay.url,
                    subscriptions=args.subscribers,
                    subs_per_conn=args.subs_per_conn,
                    events=args.fanout_events,
                    interval=args.fanout_interval,
                    workers=args.fanout_workers,
                    tag=f"benchfanout{run_id}",
                )
                return r.summary()

            out["fanout"] = await _phase(relay, out, "fanout", fanout, args.dsn, profile("fanout"))
            f = out["fanout"]
            log(
                f"{kind}: fan-out p50 {f['publish_to_delivery'].get('p50_ms')} ms,"
                f" delivered {f['delivered_pct']} %"
            )
        if "idle" in phases:

            async def idle() -> dict[str, Any]:
                return (await run_idle(relay.url, args.idle, relay.pid)).summary()

            out["idle"] = await _phase(relay, out, "idle", idle, args.dsn)
            log(f"{kind}: idle {out['idle']['kb_per_connection']} KB per connection")
    finally:
        relay.stop()
        if dsn and not args.keep_databases:
            await drop_database(args.dsn, name)
    return out


def _reads_by_target(metrics: str) -> dict[str, float]:
    """Where the relay's client reads ran, and why some fell back to the primary."""
    names = [f'fitrelay_reads_total{{target="{t}"}}' for t in ("primary", "replica")]
    names += [
        f'fitrelay_read_fallbacks_total{{reason="{r}"}}'
        for r in ("none", "behind", "down", "busy", "conflict")
    ]
    return {name.split('"')[1]: value for name, value in scrape_metrics(metrics, names).items()}


async def run(
    args: argparse.Namespace, dataset: Any, stamp: str, pagination: PaginationSet | None = None
) -> dict[str, Any]:
    started = time.perf_counter()
    # Month to second and the process id: two runs started in the same minute (from two
    # checkouts, say) must not share, and drop, each other's databases.
    run_id = stamp.replace("-", "").replace("T", "")[4:14] + f"p{os.getpid()}"
    run_dir = args.results_dir / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    machine = await report.machine_info(args.dsn, args.fitrelay_src)
    log("building the expected-answer model and the queries")
    work = Workload(args, dataset.path, dataset.stream_path, pagination)
    log(f"model: {work.stored:,} events stored by the rules, built in {work.seconds:.1f} s")
    kinds = {"off": ["fitrelay"], "on": ["fitrelay+indexer"]}.get(
        args.indexer, ["fitrelay", "fitrelay+indexer"]
    )
    if args.against in ("strfry", "both"):
        kinds.append("strfry")
    if args.against in ("nostr-relay", "both"):
        kinds.append("nostr-relay")
    targets: dict[str, Any] = {}
    for kind in kinds:
        try:
            targets[kind] = await bench_relay(kind, args, work, run_id, run_dir, dataset.path)
        except RelayUnavailable as exc:
            log(f"{kind}: unavailable: {exc}")
            targets[kind] = {"error": str(exc)}
        except Exception as exc:
            log(f"{kind}: failed: {traceback.format_exc()}")
            targets[kind] = {"error": f"{type(exc).__name__}: {exc}"}
    via_make = os.environ.get("BENCH_MAKE_COMMAND")
    command = "python -m bench " + shlex.join(sys.argv[1:])
    return {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command.strip(),
            "make_command": via_make,
            "machine": machine,
            "args": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k not in ("phase_list", "py_spy", "profile_info")
            },
            "profile": args.profile_info,
            "model_seconds": round(work.seconds, 1),
            "model_stored_events": work.stored,
            "logs": str(run_dir),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "generation": {
            **dataset.meta,
            "cached": dataset.cached,
            **(
                {"pagination": {**pagination.meta, "cached": pagination.cached}}
                if pagination is not None
                else {}
            ),
        },
        "targets": targets,
    }


def _render_only(args: argparse.Namespace) -> int:
    results = json.loads(args.render.read_text())
    markdown = report.render_markdown(results)
    print(markdown)
    if not args.no_doc:
        report.update_doc(args.doc, f"n={results['generation']['events']}", markdown)
        log(f"updated {args.doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _resolve(_parser().parse_args(argv))
    if args.render is not None:
        return _render_only(args)
    if args.compression:
        os.environ[COMPRESSION_ENV] = "deflate"  # for the fan-out worker processes too
    if args.profile_info is not None:
        if args.py_spy is None:
            log(f"--profile: {args.profile_info['missing']}")
        else:
            args.profile_info["version"] = py_spy_version(args.py_spy)
            log(f"--profile: {args.profile_info['version']} at {args.py_spy}")
    soft, hard = raise_nofile(max(args.idle, args.subscribers) + 4_096)
    need = max(args.idle, -(-args.subscribers // args.subs_per_conn)) + 256
    if soft < need:
        log(
            f"open-file limit {soft} (hard {hard}) is below the {need} this run needs; lower"
            " --idle, or raise --subs-per-conn for fan-out"
        )
    dataset = ensure_dataset(
        args.events,
        args.seed,
        args.authors,
        args.cache_dir,
        workers=args.gen_workers,
        log=log,
    )
    log(
        f"events: {dataset.path} ({args.events:,} + {stream_size(args.events):,} stream;"
        f" {'cached' if dataset.cached else 'generated'}"
        f" in {dataset.meta['generation_seconds']} s)"
    )
    pagination = None
    if "pagination" in args.phase_list:
        pagination = ensure_pagination_set(
            args.pagination_events, args.seed, args.cache_dir, workers=args.gen_workers, log=log
        )
        log(
            f"pagination events: {pagination.path} ({args.pagination_events:,};"
            f" {'cached' if pagination.cached else 'generated'}"
            f" in {pagination.meta['generation_seconds']} s)"
        )
    if args.generate_only:
        return 0
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%S")
    with contextlib.ExitStack() as stack:
        args.standbys = []
        if args.replicas is not None:
            log(f"--replicas {args.replicas}: starting a primary and its standbys")
            cluster = stack.enter_context(streaming_cluster(args.replicas))
            args.dsn, args.standbys = cluster.primary_dsn, cluster.standbys
        try:
            import uvloop

            results = uvloop.run(run(args, dataset, stamp, pagination))
        except ImportError:  # pragma: no cover
            results = asyncio.run(run(args, dataset, stamp, pagination))
    if args.replicas is not None:
        results["replicas"] = args.replicas
    path = report.write_json(results, args.results_dir, stamp)
    log(f"results: {path}")
    markdown = report.render_markdown(results)
    print(markdown)
    if not args.no_doc:
        report.update_doc(args.doc, f"n={args.events}", markdown)
        log(f"updated {args.doc}")
    failed = [k for k, t in results["targets"].items() if t.get("error")]
    return 1 if failed and len(failed) == len(results["targets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
