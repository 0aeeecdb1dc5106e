"""``fitrelay sync`` by NIP-77 negentropy against a full REQ copy, and the fetcher's time to
complete a template from an upstream relay.

    python -m bench.sync [--events 100000] [--differ 0.01] [--templates 5]

Signs N workout records (kind 1301, 100 authors) and imports them all into an upstream
database and all but a share ``--differ`` of them (every 100th at 1 %) into two local
databases. Two ``fitrelay serve`` processes read the upstream database: one as configured by
default, one with ``relay.limits.max_negentropy_records = 1``, which refuses NEG-OPEN, so
that the same sync falls back to REQ pages (a full copy of the filter). Each local database
is synced down with :func:`relay.archive.upstream.sync_upstream` (what ``fitrelay sync URL``
runs) through a byte-counting TCP proxy: the figures are the seconds of the whole sync
(reconciliation, fetching, storing) and the bytes on the wire each way.

Then a third relay, with the indexer and the fetcher on (defaults, the upstream relay as
its only upstream), receives templates whose three exercises live only upstream; the time
from the template's OK to its last set being linked is the fetcher's completion time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from bench.common import open_ws
from bench.relays import (
    ROOT,
    RelayProcess,
    create_database,
    drop_database,
    run_fitrelay_import,
    start_fitrelay,
)
from relay.archive.upstream import SyncReport, sync_upstream
from relay.nostr.filters import Filter
from relay.nostr.limits import Limits
from relay.nostr.signing import SigningKey
from relay.storage.postgres import Store, create_pool

_START, _END = "<!-- sync:start -->", "<!-- sync:end -->"
_AUTHORS = 100
_enc = msgspec.json.Encoder()


def _sign_all(count: int, every: int, run_dir: Path) -> tuple[Path, Path, int]:
    """All events into one file, all but every ``every``-th into another."""
    keys = [SigningKey(f"bench-sync-{i}") for i in range(_AUTHORS)]
    everything, local = run_dir / "upstream.jsonl", run_dir / "local.jsonl"
    left_out = 0
    start = 1_700_000_000
    with everything.open("wb") as up, local.open("wb") as down:
        for i in range(count):
            key = keys[i % _AUTHORS]
            tags = [["d", f"w{i}"], ["title", "Run"], ["distance", str(5 + i % 7), "km"]]
            line = _enc.encode(key.sign(1301, f"workout {i}", tags, start + i)) + b"\n"
            up.write(line)
            if every and i % every == every - 1:
                left_out += 1
            else:
                down.write(line)
    return everything, local, left_out


class _Meter:
    """A TCP proxy to ``port`` that counts the bytes each way."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.received = 0

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool
    ) -> None:
        try:
            while data := await reader.read(65_536):
                if up:
                    self.sent += len(data)
                else:
                    self.received += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.port)
        await asyncio.gather(
            self._pipe(reader, upstream_writer, True),
            self._pipe(upstream_reader, writer, False),
            return_exceptions=True,
        )

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            server.close()


def _port(relay: RelayProcess) -> int:
    return int(relay.url.rsplit(":", 1)[1].strip("/"))


async def _sync(dsn: str, relay: RelayProcess) -> dict[str, Any]:
    meter = _Meter(_port(relay))
    pool = await create_pool(dsn, min_size=1, max_size=2, statement_timeout_ms=0)
    try:
        store = Store(pool, default_limit=500)
        async with meter.listening() as url:
            started, cpu = time.perf_counter(), time.process_time()
            report: SyncReport = await sync_upstream(
                store, url, Filter(), {}, "down", Limits(), timeout=120.0
            )
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
        async with pool.acquire() as conn:
            stored = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await pool.close()
    return {
        "method": report.method,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_event": round(1000 * cpu / max(report.need, 1), 3),
        "largest_batch": report.largest_batch,
        "pages": report.pages,
        "bytes_sent": meter.sent,
        "bytes_received": meter.received,
        "have": report.have,
        "need": report.need,
        "fetched": report.fetched,
        "duplicate": report.duplicate,
        "rejected": sum(report.rejected.values()),
        "stored_after": stored,
    }


async def _publish(url: str, event: dict[str, Any]) -> None:
    ws = await open_ws(url)
    try:
        await ws.send(json.dumps(["EVENT", event]))
        while True:
            frame = json.loads(await ws.recv())
            if frame[0] == "OK" and frame[1] == event["id"]:
                assert frame[2] is True, frame
                return
    finally:
        await ws.close()


async def _fetcher(
    upstream: RelayProcess, admin_dsn: str, name: str, run_dir: Path, templates: int
) -> dict[str, Any]:
    dsn = await create_database(admin_dsn, name)
    extra = {"fetcher": {"enabled": True, "allow_loopback": True, "upstreams": [upstream.url]}}
    relay = start_fitrelay(dsn, name, run_dir, indexer=True, extra=extra)
    times = []
    try:
        conn = await asyncpg.connect(dsn)
        try:
            for n in range(templates):
                key = SigningKey(f"bench-fetch-{time.time_ns()}-{n}")
                refs = []
                for d in ("squat", "bench", "row"):
                    tags = [["d", d], ["title", d.title()], ["format", "weight", "reps"],
                            ["format_units", "kg", "count"], ["equipment", "barbell"]]  # fmt: skip
                    await _publish(upstream.url, key.sign(33401, d, tags, int(time.time())))
                    refs.append(["exercise", f"33401:{key.pubkey}:{d}", "", "80", "5"])
                tags = [["d", f"day{n}"], ["title", "Day"], *refs]
                template = key.sign(33402, "", tags, int(time.time()))
                started = time.perf_counter()
                await _publish(relay.url, template)
                while True:
                    linked = await conn.fetchval(
                        "SELECT count(*) FROM fitness.template_sets"
                        " WHERE template_pubkey = $1 AND exercise_event_id IS NOT NULL",
                        key.pubkey,
                    )
                    if linked == 3:
                        break
                    if time.perf_counter() - started > 60:
                        raise RuntimeError("the template was not completed within 60 s")
                    await asyncio.sleep(0.01)
                times.append(time.perf_counter() - started)
        finally:
            await conn.close()
    finally:
        relay.proc.terminate()
        relay.proc.wait(30)
        await drop_database(admin_dsn, name)
    return {
        "templates": templates,
        "median_s": round(statistics.median(times), 2),
        "min_s": round(min(times), 2),
        "max_s": round(max(times), 2),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(args.results_dir) / time.strftime("sync-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    every = round(1 / args.differ) if args.differ else 0
    started = time.perf_counter()
    everything, local, left_out = await asyncio.to_thread(_sign_all, args.events, every, run_dir)
    signed = time.perf_counter() - started
    stamp = int(time.time())
    names = {role: f"{args.prefix}_{role}_{stamp}" for role in ("up", "neg", "req")}
    dsns = {role: await create_database(args.dsn, name) for role, name in names.items()}
    relays: list[RelayProcess] = []
    try:
        loads = {"up": run_fitrelay_import(dsns["up"], everything, run_dir / "up.log")}
        for role in ("neg", "req"):
            loads[role] = run_fitrelay_import(dsns[role], local, run_dir / f"{role}.log")
        (run_dir / "plain").mkdir()
        (run_dir / "req").mkdir()
        plain = start_fitrelay(dsns["up"], names["up"], run_dir / "plain", indexer=False)
        relays.append(plain)
        no_neg = {"relay": {"limits": {"max_negentropy_records": 1}}}
        req_only = start_fitrelay(dsns["up"], names["up"], run_dir / "req", indexer=False,
                                  extra=no_neg)  # fmt: skip
        relays.append(req_only)
        results: dict[str, Any] = {
            "events": args.events,
            "left_out": left_out,
            "signing_s": round(signed, 1),
            "imports": {role: load["seconds"] for role, load in loads.items()},
            "negentropy": await _sync(dsns["neg"], plain),
            "req": await _sync(dsns["req"], req_only),
        }
        results["fetcher"] = await _fetcher(
            plain, args.dsn, f"{args.prefix}_fetch_{stamp}", run_dir, args.templates
        )
        return results
    finally:
        for relay in relays:
            relay.proc.terminate()
            relay.proc.wait(30)
        for name in names.values():
            await drop_database(args.dsn, name)


def _table(results: dict[str, Any]) -> str:
    neg, req = results["negentropy"], results["req"]

    def ratio(a: float, b: float) -> str:
        return f"{b / a:.{1 if b >= a else 2}f} x" if a else "-"

    def mb(n: int) -> str:
        return f"{n / 1e6:,.2f} MB"

    fetcher = results["fetcher"]
    neg_bytes = neg["bytes_sent"] + neg["bytes_received"]
    req_bytes = req["bytes_sent"] + req["bytes_received"]
    return "\n".join([
        _START,
        f"{results['events']:,} workout records upstream; the local database lacks"
        f" {results['left_out']:,} of them. `python -m bench.sync --events {results['events']}`;"
        f" {time.strftime('%Y-%m-%d')}; 2 shared cores, both relays, PostgreSQL and the sync on"
        " one machine; bytes on the wire (TCP payload, both ways) through a counting proxy.",
        "",
        "| | negentropy (NIP-77) | full REQ copy | REQ ÷ negentropy |",
        "|---|---|---|---|",
        f"| seconds | {neg['seconds']} | {req['seconds']} |"
        f" {ratio(neg['seconds'], req['seconds'])} |",
        f"| bytes received | {mb(neg['bytes_received'])} | {mb(req['bytes_received'])} |"
        f" {ratio(neg['bytes_received'], req['bytes_received'])} |",
        f"| bytes sent | {mb(neg['bytes_sent'])} | {mb(req['bytes_sent'])} |"
        f" {ratio(neg['bytes_sent'], req['bytes_sent'])} |",
        f"| bytes both ways | {mb(neg_bytes)} | {mb(req_bytes)} | {ratio(neg_bytes, req_bytes)} |",
        f"| events transferred | {neg['need']:,} | {req['need']:,} | |",
        f"| stored afterwards | {neg['stored_after']:,} | {req['stored_after']:,} | |",
        f"| CPU of the syncing process, s | {neg['cpu_s']} | {req['cpu_s']} |"
        f" {ratio(neg['cpu_s'], req['cpu_s'])} |",
        f"| its CPU per event transferred, ms | {neg['cpu_ms_per_event']} |"
        f" {req['cpu_ms_per_event']} | |",
        f"| most events held at once | {neg['largest_batch']:,} | {req['largest_batch']:,} | |",
        "",
        f"The fetcher completed a template whose three exercises lived only upstream in"
        f" {fetcher['median_s']} s (median of {fetcher['templates']}; {fetcher['min_s']} to "
        f"{fetcher['max_s']} s), from the template's OK to its last set linked, with the"
        " default `[fetcher]` settings.",
        _END,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--differ", type=float, default=0.01, help="share the local side lacks")
    parser.add_argument("--templates", type=int, default=5)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--prefix", default="fitrelay_bench_sync", help="of the databases made")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    results = asyncio.run(_run(args))
    table = _table(results)
    print(json.dumps(results, indent=2))
    print(table)
    if args.no_doc:
        return
    doc = Path(args.doc)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if _START in text:
        text = text[: text.index(_START)] + table + text[text.index(_END) + len(_END) :]
    else:
        text += "\n## Sync and the fetcher\n\n" + table + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
