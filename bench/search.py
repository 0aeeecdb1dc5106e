"""python -m bench.search: NIP-50 search over an exercise library (100,000 exercises).

One run: generate (or reuse) N signed kind-33401 exercise definitions from 500 authors, whose
titles, equipment, hashtags and instructions combine a small fitness vocabulary (so common
words such as "press" match thousands of exercises and rare ones a few); start fitrelay on a
fresh database on the given server; load the library over WebSocket (8 connections, 16
EVENTs in flight: the ingest rate with search documents built); then run each search shape
over C connections, one REQ at a time per connection and CLOSE after EOSE, and report
queries/s, time to EOSE (p50, p99) and the relay's and PostgreSQL's CPU per query.

Every answer is checked against :mod:`relay.nostr.search` applied to the library in Python
(the definition the SQL must agree with): each event once, every one a match, and exactly
``min(limit, matches)`` of them (the order, by relevance, is the relay's own). Results go to
bench/results/search-<timestamp>.json and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import secp256k1

from bench.common import EventId, cpu_seconds, latency_summary, process_cpu
from bench.ingest import partition_by_author, publish
from bench.query import QueryConnection, QueryError, request
from bench.relays import (
    backend_pids,
    create_database,
    drop_database,
    start_fitrelay,
)
from relay.nostr.event import canonical_bytes, decode_event
from relay.nostr.search import document_of, parse_search, word_matches

ROOT = Path(__file__).resolve().parents[1]
KINDS = frozenset({33401, 33402})
MOVEMENTS = (
    "bench press", "squat", "deadlift", "row", "curl", "overhead press", "lunge", "pull up",
    "push up", "dip", "fly", "raise", "extension", "shrug", "hip thrust", "calf raise",
    "good morning", "clean", "snatch", "jerk", "pulldown", "pullover", "crunch", "plank",
)  # fmt: skip
MODIFIERS = (
    "incline", "decline", "paused", "tempo", "close grip", "wide grip", "single arm",
    "seated", "standing", "romanian", "front", "back", "sumo", "bulgarian", "reverse",
    "deficit", "box", "floor", "landmine", "zercher",
)  # fmt: skip
EQUIPMENT = ("barbell", "dumbbell", "kettlebell", "cable", "machine", "bodyweight", "band")
MUSCLES = ("chest", "back", "legs", "shoulders", "arms", "core", "glutes", "hamstrings")
CUES = (
    "brace your core", "keep the bar close", "drive through the heels", "control the descent",
    "squeeze at the top", "keep a neutral spine", "breathe out on the way up",
    "stop one rep before failure", "keep the elbows tucked", "full range of motion",
)  # fmt: skip
SHAPES: dict[str, tuple[str, ...]] = {
    "two words": ("bench press", "back squat", "romanian deadlift", "cable fly", "hip thrust"),
    "typo": ("bentch pres", "dedlift", "sqat", "kettlebel swing", "overhed pres"),
    "common word": ("press", "barbell", "core", "incline", "dumbbell"),
    "rare words": ("zercher squat", "landmine single arm row", "deficit sumo deadlift"),
    "prefix": ("bul", "pull", "ext", "romani", "kettle"),
}
LIMITS = (20, 100)


def _secret(seed: int, index: int) -> bytes:
    return hashlib.sha256(f"fitrelay-search-bench-{seed}-{index}".encode()).digest()


def generate(n: int, seed: int, authors: int) -> list[bytes]:
    """``n`` signed exercise definitions as JSON lines (deterministic for a seed)."""
    rng = random.Random(seed)
    keys = [secp256k1.PrivateKey(_secret(seed, a), raw=True) for a in range(authors)]
    pubkeys = [k.pubkey.serialize()[1:].hex() for k in keys]
    lines = []
    base = 1_700_000_000
    for i in range(n):
        a = rng.randrange(authors)
        equipment = rng.choice(EQUIPMENT)
        words = [rng.choice(MODIFIERS)] if rng.random() < 0.6 else []
        title = " ".join([*words, equipment, rng.choice(MOVEMENTS)]).title()
        if rng.random() < 0.3:
            title += f" {rng.randrange(1, 10)}x{rng.randrange(1, 12)}"
        tags = [["d", f"ex-{i}"], ["title", title], ["equipment", equipment],
                ["format", "weight", "reps"], ["format_units", "kg", "count"]]  # fmt: skip
        tags += [["t", m] for m in rng.sample(MUSCLES, rng.randint(1, 2))]
        content = ". ".join(rng.sample(CUES, rng.randint(1, 3))).capitalize() + "."
        created = base + i
        serial = canonical_bytes(pubkeys[a], created, 33401, tags, content)
        digest = hashlib.sha256(serial).digest()
        sig = keys[a].schnorr_sign(digest, None, raw=True).hex()
        event = {"id": digest.hex(), "pubkey": pubkeys[a], "created_at": created,
                 "kind": 33401, "tags": tags, "content": content, "sig": sig}  # fmt: skip
        lines.append(msgspec.json.encode(event))
    return lines


def ensure_library(cache: Path, n: int, seed: int, authors: int) -> list[bytes]:
    path = cache / f"search-{n}-{seed}-{authors}.jsonl"
    if path.is_file():
        return path.read_bytes().splitlines()
    lines = generate(n, seed, authors)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


class Library:
    """The library's documents, with an inverted index for the expected answers."""

    def __init__(self, lines: Sequence[bytes]) -> None:
        self.ids: list[str] = []
        self.authors: list[str] = []
        self.postings: defaultdict[str, set[int]] = defaultdict(set)
        for n, line in enumerate(lines):
            event = decode_event(line)
            self.ids.append(event.id)
            self.authors.append(event.pubkey)
            for word in document_of(event).words:
                self.postings[word].add(n)

    def matches(self, text: str) -> set[str]:
        """Ids of the exercises ``text`` matches, by the Python definition."""
        words = parse_search(text, KINDS).words
        found: set[int] | None = None
        for q in words:
            hit: set[int] = set()
            for d, docs in self.postings.items():
                if word_matches(q, d):
                    hit |= docs
            found = hit if found is None else found & hit
        every = set(range(len(self.ids))) if found is None else found
        return {self.ids[i] for i in every}


async def run_shape(
    url: str, filters: Sequence[dict[str, Any]], expected: Sequence[set[str]], concurrency: int
) -> dict[str, Any]:
    conns = [await QueryConnection.open(url) for _ in range(concurrency)]
    latencies: list[float] = []
    exact = wrong = errors = events = 0
    queue = list(range(len(filters)))
    start = time.perf_counter()

    async def worker(slot: int) -> None:
        nonlocal exact, wrong, errors, events
        n = 0
        while queue:
            i = queue.pop()
            n += 1
            sent = time.perf_counter()
            try:
                got = await request(conns[slot], f"s{slot}-{n}", filters[i], 30.0, EventId)
            except (QueryError, TimeoutError, ConnectionError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - sent)
            ids = [e.id for e in got]
            events += len(ids)
            want = min(filters[i]["limit"], len(expected[i]))
            if len(ids) == len(set(ids)) == want and set(ids) <= expected[i]:
                exact += 1
            else:
                wrong += 1

    await asyncio.gather(*(worker(s) for s in range(concurrency)))
    seconds = time.perf_counter() - start
    for conn in conns:
        conn.close()
    done = exact + wrong
    return {
        "queries": len(filters),
        "seconds": round(seconds, 3),
        "queries_per_s": round(len(filters) / seconds, 1) if seconds else 0.0,
        "eose_latency": latency_summary(latencies),
        "events_per_query": round(events / done, 1) if done else 0.0,
        "exact": exact,
        "wrong": wrong,
        "errors": errors,
    }


def _queries(
    library: Library, rng: random.Random, per_shape: int
) -> dict[str, tuple[list[dict[str, Any]], list[set[str]]]]:
    out = {}
    answers: dict[str, set[str]] = {}
    for shape, texts in SHAPES.items():
        filters, expected = [], []
        for _ in range(per_shape):
            text = rng.choice(texts)
            flt: dict[str, Any] = {"kinds": [33401], "search": text, "limit": rng.choice(LIMITS)}
            if shape == "common word" and rng.random() < 0.5:
                author = library.authors[rng.randrange(len(library.authors))]
                flt["authors"] = [author]
                key = f"{text}\x00{author}"
                if key not in answers:
                    mine = {i for i, a in zip(library.ids, library.authors, strict=True)
                            if a == author}  # fmt: skip
                    answers[key] = library.matches(text) & mine
            else:
                key = text
                if key not in answers:
                    answers[key] = library.matches(text)
            filters.append(flt)
            expected.append(answers[key])
        out[shape] = (filters, expected)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--exercises", type=int, default=100_000, help="library size (100000)")
    p.add_argument("--authors", type=int, default=500, help="distinct authors (500)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--queries-per-shape", type=int, default=400, help="(400)")
    p.add_argument("--concurrency", type=int, default=8, help="query connections (8)")
    p.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL that may create databases (default: %(default)s)",
    )
    p.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--keep-database", action="store_true")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also load the library into a relay with [relay.search] enabled = false, for"
        " the cost of search documents at ingest",
    )
    return p


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(result: dict[str, Any]) -> str:
    rows = [
        f"Search over {result['exercises']:,} exercises ({result['authors']} authors),"
        f" {result['concurrency']} connections, one REQ at a time each, CLOSE after EOSE;"
        f" load {result['load']['events_per_s']:,} ev/s with search documents"
        + (
            f" ({result['load_without_search']['events_per_s']:,} ev/s without)."
            if "load_without_search" in result
            else "."
        ),
        "",
        "| shape | q/s | EOSE p50 ms | EOSE p99 ms | events/query | exact"
        " | relay+PG CPU ms/query |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape, s in result["shapes"].items():
        lat = s["eose_latency"]
        rows.append(
            f"| {shape} | {s['queries_per_s']:,} | {lat.get('p50_ms')} | {lat.get('p99_ms')}"
            f" | {s['events_per_query']} | {s['exact']}/{s['queries']} | {s['cpu_ms_per_query']} |"
        )
    return "\n".join(rows)


async def _load_without_search(
    args: argparse.Namespace, lines: Sequence[bytes], library: Library, run_dir: Path
) -> dict[str, Any]:
    """The same load into a relay that writes no search documents."""
    name = f"fitrelay_bench_search_{run_dir.name[7:].lower()}_base"
    dsn = await create_database(args.dsn, name)
    base_dir = run_dir / "baseline"
    base_dir.mkdir(exist_ok=True)
    extra = {"relay": {"search": {"enabled": False}}}
    relay = start_fitrelay(dsn, name, base_dir, indexer=False, extra=extra)
    try:
        parts = partition_by_author(library.authors, 8)
        loaded = await publish(relay.url, lines, library.ids, parts, window=16)
        log(f"without search documents: {loaded.summary()['events_per_s']:,} ev/s")
        return loaded.summary()
    finally:
        relay.stop()
        await drop_database(args.dsn, name)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    log(f"library: {args.exercises:,} exercises")
    lines = await asyncio.to_thread(
        ensure_library, args.cache_dir, args.exercises, args.seed, args.authors
    )
    library = Library(lines)
    queries = _queries(library, random.Random(args.seed), args.queries_per_shape)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = args.results_dir / f"search-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"fitrelay_bench_search_{stamp.lower()}"
    dsn = await create_database(args.dsn, name)
    relay = start_fitrelay(dsn, name, run_dir, indexer=False)
    result: dict[str, Any] = {"exercises": len(lines), "authors": args.authors,
                              "concurrency": args.concurrency, "shapes": {}}  # fmt: skip
    try:
        log(f"loading into {relay.url}")
        ids = [library.ids[i] for i in range(len(lines))]
        parts = partition_by_author(library.authors, 8)
        loaded = await publish(relay.url, lines, ids, parts, window=16)
        result["load"] = loaded.summary()
        log(f"loaded {result['load']['accepted']:,} at {result['load']['events_per_s']:,} ev/s")
        for shape, (filters, expected) in queries.items():
            pg0 = process_cpu(await backend_pids(args.dsn, name))
            cpu0 = cpu_seconds(relay.pid)
            s = await run_shape(relay.url, filters, expected, args.concurrency)
            pg1 = process_cpu(await backend_pids(args.dsn, name))
            cpu = cpu_seconds(relay.pid) - cpu0 + sum(v - pg0.get(p, 0.0) for p, v in pg1.items())
            s["cpu_ms_per_query"] = round(1000 * cpu / max(1, s["queries"]), 2)
            result["shapes"][shape] = s
            log(f"{shape}: {s['queries_per_s']} q/s, p50 {s['eose_latency'].get('p50_ms')} ms,"
                f" exact {s['exact']}/{s['queries']}")  # fmt: skip
    finally:
        relay.stop()
        if not args.keep_database:
            await drop_database(args.dsn, name)
    if args.baseline:
        result["load_without_search"] = await _load_without_search(args, lines, library, run_dir)
    out = args.results_dir / f"search-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
    log(f"results: {out}")
    return result


if __name__ == "__main__":
    asyncio.run(main(_parser().parse_args()))
