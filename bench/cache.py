"""The query cache's speed-up: the same exercise-library REQs against fitrelay with the cache
on and off, on one loaded database.

    python -m bench.cache [--events 100000] [--seconds 15] [--connections 8]

Loads the cached bench events (``python -m bench --generate-only`` makes them) with
``fitrelay import``, then, for each setting, starts ``fitrelay serve``, sends
``{"kinds":[33401],"authors":[pk]}`` for the 50 authors with the most exercises (a popular
library fetched by every client on start) from C connections for T seconds, and reports
queries/s, time to EOSE and the hit ratio read from /metrics. Every answer is compared with
the first answer for the same author (the data does not change during the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import latency_summary, open_ws, scrape_metrics
from bench.relays import (
    ROOT,
    _clean_env,
    _free_port,
    create_database,
    drop_database,
    run_fitrelay_import,
    vacuum_analyze,
)

_LISTENING = re.compile(r"listening on (ws://\S+)")
_COUNTERS = ("fitrelay_cache_hits_total", "fitrelay_cache_misses_total")
_START, _END = "<!-- cache:start -->", "<!-- cache:end -->"


def _popular_authors(path: Path, count: int) -> list[str]:
    authors: Counter[str] = Counter()
    with path.open("rb") as lines:
        for line in lines:
            if b'"kind":33401' in line:
                authors[json.loads(line)["pubkey"]] += 1
    return [pk for pk, _ in authors.most_common(count)]


def _start(dsn: str, run_dir: Path, cache: bool) -> tuple[subprocess.Popen[bytes], str, int]:
    metrics = _free_port()
    config = run_dir / f"cache-{cache}.toml"
    config.write_text(
        '[relay]\nhost = "127.0.0.1"\nport = 0\n\n[relay.cache]\n'
        f"enabled = {str(cache).lower()}\n\n[indexer]\nenabled = false\n\n"
        f'[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
    )
    log = run_dir / f"cache-{cache}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config), "--db-dsn", dsn],
            cwd=ROOT, env=_clean_env(ROOT), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            return proc, match.group(1), metrics
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"fitrelay did not start:\n{log.read_text()[-2000:]}")


async def _load(
    url: str, authors: list[str], connections: int, seconds: float
) -> tuple[list[float], int]:
    latencies: list[float] = []
    first: dict[str, list[str]] = {}
    mismatches = 0
    stop_at = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal mismatches
        rng = random.Random(n)
        ws = await open_ws(url)
        try:
            i = 0
            while time.monotonic() < stop_at:
                author = rng.choice(authors)
                sub = f"c{n}-{i}"
                i += 1
                started = time.perf_counter()
                await ws.send(json.dumps(["REQ", sub, {"kinds": [33401], "authors": [author]}]))
                ids = []
                while True:
                    frame = json.loads(await ws.recv())
                    if frame[0] == "EVENT" and frame[1] == sub:
                        ids.append(frame[2]["id"])
                    elif frame[0] == "EOSE" and frame[1] == sub:
                        break
                latencies.append(time.perf_counter() - started)
                await ws.send(json.dumps(["CLOSE", sub]))
                if first.setdefault(author, ids) != ids:
                    mismatches += 1
        finally:
            await ws.close()

    await asyncio.gather(*(worker(n) for n in range(connections)))
    return latencies, mismatches


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    events = Path(args.cache_dir) / f"events-{args.events}-1.jsonl"
    if not events.exists():
        subprocess.run(
            [sys.executable, "-m", "bench", "--generate-only", "--events", str(args.events)],
            cwd=ROOT, check=True,
        )  # fmt: skip
    run_dir = Path(args.results_dir) / time.strftime("cache-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"fitrelay_bench_cache_{int(time.time())}"
    dsn = await create_database(args.dsn, name)
    try:
        loaded = run_fitrelay_import(dsn, events, run_dir / "import.log")
        await vacuum_analyze(dsn)
        authors = _popular_authors(events, 50)
        results: dict[str, Any] = {"events": args.events, "import": loaded, "runs": {}}
        for cache in (False, True):
            proc, url, metrics = _start(dsn, run_dir, cache)
            try:
                await _load(url, authors, args.connections, 2.0)  # warm both the same way
                before = scrape_metrics(f"127.0.0.1:{metrics}", _COUNTERS)
                started = time.perf_counter()
                latencies, wrong = await _load(url, authors, args.connections, args.seconds)
                elapsed = time.perf_counter() - started
                after = scrape_metrics(f"127.0.0.1:{metrics}", _COUNTERS)
            finally:
                proc.terminate()
                proc.wait(30)
            hits = after["fitrelay_cache_hits_total"] - before["fitrelay_cache_hits_total"]
            misses = after["fitrelay_cache_misses_total"] - before["fitrelay_cache_misses_total"]
            results["runs"]["on" if cache else "off"] = {
                "queries": len(latencies),
                "queries_per_s": round(len(latencies) / elapsed, 1),
                "eose": latency_summary(latencies),
                "hit_ratio": round(hits / (hits + misses), 3) if hits + misses else 0.0,
                "answers_differing": wrong,
            }  # fmt: skip
        return results
    finally:
        await drop_database(args.dsn, name)


def _table(results: dict[str, Any], args: argparse.Namespace) -> str:
    off, on = results["runs"]["off"], results["runs"]["on"]

    def row(label: str, a: float, b: float) -> str:
        return f"| {label} | {a:,} | {b:,} | {b / a if a else 0:.2f} |"

    return "\n".join(
        [
            _START,
            f'Exercise-library REQs (`{{"kinds":[33401],"authors":[pk]}}`, 50 popular'
            f" authors) over {results['events']:,} events, {args.connections} connections,"
            f" {args.seconds:.0f} s each; `python -m bench.cache`; {time.strftime('%Y-%m-%d')};"
            " 2 shared cores, relay, PostgreSQL and load generator on one machine.",
            "",
            "| | cache off | cache on | on ÷ off |",
            "|---|---|---|---|",
            row("queries/s", off["queries_per_s"], on["queries_per_s"]),
            row("time to EOSE p50 ms", off["eose"]["p50_ms"], on["eose"]["p50_ms"]),
            row("time to EOSE p99 ms", off["eose"]["p99_ms"], on["eose"]["p99_ms"]),
            f"| hit ratio | {off['hit_ratio']} | {on['hit_ratio']} | |",
            f"| answers differing from the first | {off['answers_differing']} |"
            f" {on['answers_differing']} | |",
            _END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--cache-dir", default=str(ROOT / "bench" / ".cache"))
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    results = asyncio.run(_run(args))
    table = _table(results, args)
    print(json.dumps(results, indent=2))
    print(table)
    doc = Path(args.doc)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if _START in text:
        text = text[: text.index(_START)] + table + text[text.index(_END) + len(_END) :]
    else:
        text += "\n## Query cache\n\n" + table + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
