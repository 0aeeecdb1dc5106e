"""python -m bench.replica_mix: REQs while events are being written, with reads on 0, 1 or 2
hot standbys, on a throwaway primary of the harness's own (:mod:`bench.standby`).

A read runs on a standby only once it has replayed everything the relay process has acted
on (docs/scaling.md), so under writes some reads go to the primary: this measures how many,
and the REQ rate, beside the quiet-read figures of ``python -m bench --replicas N``.

For each replica count: a fresh database, ``fitrelay serve`` with ``db.read_dsns``; the
first half of the cached bench events loaded, then for ``--seconds``: ``--publishers``
stop-and-wait publishers send the rest while ``--readers`` connections each run REQs of
one author's newest 20 events (a different author each time), and the relay's counters of
reads by target and fallbacks are read at the end. One run, on a shared machine: figures
move by tens of percent between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.common import open_ws, percentile, scrape_metrics
from bench.ingest import partition_by_author, publish
from bench.relays import create_database, drop_database, start_fitrelay
from bench.standby import streaming_cluster

ROOT = Path(__file__).resolve().parents[1]


class _Ev(msgspec.Struct):
    id: str
    pubkey: str


def _load(path: Path) -> tuple[list[bytes], list[str], list[str]]:
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    decoded = [msgspec.json.decode(line, type=_Ev) for line in lines]
    return lines, [e.id for e in decoded], [e.pubkey for e in decoded]


async def _reader(url: str, authors: list[str], stop: asyncio.Event, out: list[float]) -> None:
    ws = await open_ws(url)
    try:
        for i in itertools.count():
            if stop.is_set():
                return
            sub = f"r{i}"
            author = authors[i * 7919 % len(authors)]
            started = time.perf_counter()
            await ws.send(json.dumps(["REQ", sub, {"authors": [author], "limit": 20}]))
            while True:
                reply = json.loads(await ws.recv())
                if reply[0] in ("EOSE", "CLOSED") and reply[1] == sub:
                    break
            if reply[0] == "CLOSED":
                raise RuntimeError(f"REQ closed: {reply}")
            out.append(time.perf_counter() - started)
            await ws.send(json.dumps(["CLOSE", sub]))
    finally:
        await ws.close()


def _reads(metrics: str) -> dict[str, float]:
    names = [f'fitrelay_reads_total{{target="{t}"}}' for t in ("primary", "replica")]
    names += [
        f'fitrelay_read_fallbacks_total{{reason="{r}"}}'
        for r in ("none", "behind", "down", "busy", "conflict")
    ]
    return {n.split('"')[1]: v for n, v in scrape_metrics(metrics, names).items() if v}


async def _one(args: argparse.Namespace, admin: str, standbys: list[Any], n: int) -> dict[str, Any]:
    lines, ids, pubkeys = _load(args.events)
    half = len(lines) // 2
    name = f"fitrelay_mix_{n}"
    dsn = await create_database(admin, name)
    run_dir = Path(tempfile.mkdtemp(prefix=f"fitrelay-mix{n}-"))
    # Without the in-memory mirror, so that reads reach PostgreSQL and its replicas.
    extra: dict[str, Any] = {"relay": {"mirror_events": 0}}
    if n:
        extra["db"] = {"read_dsns": [sb.dsn(name) for sb in standbys[:n]]}
    relay = start_fitrelay(dsn, name, run_dir, indexer=False, extra=extra)
    try:
        parts = partition_by_author(pubkeys[:half], args.publishers)
        await publish(relay.url, lines[:half], ids[:half], parts, window=16)
        assert relay.metrics is not None
        before = _reads(relay.metrics)
        rest = list(range(half, len(lines)))
        stream = [[rest[i] for i in range(c, len(rest), args.publishers)]
                  for c in range(args.publishers)]  # fmt: skip
        stop = asyncio.Event()
        latencies: list[float] = []
        authors = sorted(set(pubkeys[:half]))
        readers = [
            asyncio.create_task(_reader(relay.url, authors, stop, latencies))
            for _ in range(args.readers)
        ]
        started = time.perf_counter()
        written = await publish(relay.url, lines, ids, stream, window=1, time_limit=args.seconds)
        stop.set()
        await asyncio.gather(*readers)
        seconds = time.perf_counter() - started
        after = _reads(relay.metrics)
        latencies.sort()
        return {
            "replicas": n,
            "seconds": round(seconds, 1),
            "events_per_s": written.summary()["events_per_s"],
            "reqs_per_s": round(len(latencies) / seconds, 1),
            "req_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
            "req_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "reads": {k: after.get(k, 0) - before.get(k, 0) for k in after},
        }
    finally:
        relay.stop()
        await drop_database(admin, name)


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with streaming_cluster(max(args.replicas)) as cluster:
        for n in args.replicas:
            result = await _one(args, cluster.primary_dsn, cluster.standbys, n)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replica_mix", description=__doc__)
    p.add_argument(
        "--events",
        type=Path,
        default=ROOT / "bench" / ".cache" / "events-5000-1.jsonl",
        help="signed events, one per line (default: the --quick bench set)",
    )
    p.add_argument("--replicas", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--readers", type=int, default=4)
    args = p.parse_args(argv)
    if not args.events.exists():
        raise SystemExit(f"{args.events}: run `python -m bench --quick --generate-only` first")
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
