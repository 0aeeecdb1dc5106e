"""Helpers shared by the measurements: WebSocket connections, percentiles, process figures,
and cheap decoding of the EVENT frames a client receives."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect

__all__ = [
    "EventId",
    "EventIdTime",
    "cpu_seconds",
    "decode_event_id",
    "decode_event_id_time",
    "event_prefix",
    "gather_limited",
    "latency_summary",
    "open_ws",
    "percentile",
    "process_cpu",
    "raise_nofile",
    "rss_kb",
    "scrape_metrics",
    "tree_pids",
]

_T = TypeVar("_T")


# -- EVENT frames ----------------------------------------------------------------------------
#
# A client that only needs an event's id (or id and created_at) need not build the whole
# event: decoded into a Struct with just those fields, msgspec validates the JSON of the
# other fields and skips them without allocating anything (tags of a contact list run to a
# thousand entries). The message itself is decoded as a 3-tuple, so a frame of another shape
# fails to decode rather than passing unnoticed. Callers recognise an EVENT frame by its
# first bytes (``event_prefix``) and decode anything else generically.


class EventId(msgspec.Struct):
    """An event of which only the id is kept."""

    id: str


class EventIdTime(msgspec.Struct):
    """An event of which only the id and created_at are kept."""

    id: str
    created_at: int


decode_event_id = msgspec.json.Decoder(tuple[str, str, EventId]).decode
"""``["EVENT", sub, event]`` with only the event's id."""
decode_event_id_time = msgspec.json.Decoder(tuple[str, str, EventIdTime]).decode
"""``["EVENT", sub, event]`` with only the event's id and created_at."""


def event_prefix(sub: str | None = None) -> bytes:
    """How an EVENT frame for ``sub`` (for any subscription without it) begins when written
    without spaces, as relays write them; frames written otherwise take the generic path."""
    if sub is None:
        return b'["EVENT",'
    return b'["EVENT",' + msgspec.json.encode(sub) + b","


def raise_nofile(want: int) -> tuple[int, int]:
    """Raise the soft limit on open files towards ``want`` (at most the hard limit).

    Children started afterwards inherit it. Returns the (soft, hard) limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    return soft, hard


COMPRESSION_ENV = "BENCH_CLIENT_COMPRESSION"
"""Set to ``deflate`` (by ``--compression``, inherited by the fan-out worker processes) for
clients that offer permessage-deflate."""


async def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    """A client connection as the harness uses them: no compression (unless
    ``BENCH_CLIENT_COMPRESSION=deflate``), no client pings, unbounded incoming queue (readers
    drain it), generous timeouts."""
    options: dict[str, Any] = {
        "compression": "deflate" if os.environ.get(COMPRESSION_ENV) == "deflate" else None,
        "max_size": None,
        "max_queue": None,
        "ping_interval": None,
        "open_timeout": 60,
        "close_timeout": 2,
        "proxy": None,
    }
    options.update(kwargs)
    return await connect(url, **options)


async def gather_limited(
    factories: Iterable[Callable[[], Awaitable[_T]]], limit: int
) -> list[_T | BaseException]:
    """Run the coroutines made by ``factories`` with at most ``limit`` at a time."""
    sem = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[_T]]) -> _T:
        async with sem:
            return await factory()

    return await asyncio.gather(*(one(f) for f in factories), return_exceptions=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 < q <= 100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return float(sorted_values[int(rank) - 1])


def latency_summary(seconds: Iterable[float]) -> dict[str, float | int]:
    """Count, p50, p90, p99, max and mean of latencies given in seconds, reported in ms."""
    values = sorted(seconds)
    if not values:
        return {"n": 0}
    ms = 1000.0
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * ms, 3),
        "p90_ms": round(percentile(values, 90) * ms, 3),
        "p99_ms": round(percentile(values, 99) * ms, 3),
        "max_ms": round(values[-1] * ms, 3),
        "mean_ms": round(sum(values) / len(values) * ms, 3),
    }


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS) of ``pid`` and its descendants, in KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its live descendants, in seconds."""
    return sum(process_cpu(tree_pids(pid)).values())


def process_cpu(pids: Iterable[int]) -> dict[int, float]:
    """User plus system CPU seconds of each live process of ``pids``."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return out


def scrape_metrics(address: str, names: Iterable[str]) -> dict[str, float]:
    """The values of unlabelled samples ``names`` on a relay's ``/metrics`` at ``address``
    (host:port); 0 for a sample it does not export."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for name in names:
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        found[name] = float(match.group(1)) if match else 0.0
    return found
