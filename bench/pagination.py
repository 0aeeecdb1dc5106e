"""Deep pagination: walking back through one author's notes with ``until``, page by page.

The set (:func:`bench.generate.ensure_pagination_set`) is N kind 1 notes by one author of
its own, with distinct ``created_at`` values one second apart. It is loaded into the relay
under test newest first, over WebSocket with the ingest publisher (P connections, W EVENTs
in flight; the notes are independent of each other, so they are dealt out round-robin). The
first few thousand give the relay's rate; when loading everything at that rate would take
longer than the load budget, only the newest notes that fit are loaded, and the results
say so.

The walk, on one connection read like the REQ phase's (:func:`bench.query.request`), asks
``{"authors":[pk],"kinds":[1],"limit":L}``, then the same with ``until`` = the oldest
``created_at`` received so far minus one (``until`` is inclusive in NIP-01 and the values
are distinct, so pages neither overlap nor skip), until a page holds fewer than L events.
Each page is timed from REQ to EOSE. The walk is checked: every loaded note exactly once,
newest first; missing, extra, repeated and out-of-order events are counted, and CLOSED,
NOTICE, a timeout or a page that does not move back are errors that end the walk. "Flat"
means the deepest pages (the last tenth) answer as fast as the first tenth: the ratio of
their medians is near 1.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bench.common import (
    EventIdTime,
    latency_summary,
    percentile,
)
from bench.ingest import publish
from bench.query import QueryConnection, request

__all__ = ["PaginationResult", "decode_notes", "load_notes", "walk"]

_decode_note = msgspec.json.Decoder(EventIdTime).decode


def decode_notes(lines: Sequence[bytes]) -> tuple[list[str], list[int]]:
    """The ids and created_at values of the pagination file's lines, in file order."""
    notes = [_decode_note(line) for line in lines]
    return [n.id for n in notes], [n.created_at for n in notes]


async def load_notes(
    url: str,
    lines: Sequence[bytes],
    ids: Sequence[str],
    *,
    publishers: int,
    window: int,
    budget: float,
    probe: int = 5_000,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Publish the newest notes of ``lines`` (all of them unless that would take longer
    than ``budget`` seconds at the rate of the first ``probe``; 0 = no budget)."""
    started = time.perf_counter()

    def dealt(lo: int, hi: int) -> list[list[int]]:
        return [list(range(lo + c, hi, publishers)) for c in range(publishers)]

    total = len(lines)
    first = min(total, probe)
    runs = [await publish(url, lines, ids, dealt(0, first), window=window)]
    rate = runs[0].answered / runs[0].seconds if runs[0].seconds > 0 else float("inf")
    more = total - first
    if more and budget > 0:
        room = budget - (time.perf_counter() - started)
        more = min(more, max(0, int(rate * room)))
    if more < total - first:
        log(
            f"loading {first + more:,} of the {total:,} pagination events: at"
            f" {rate:,.0f} events/s all of them would take {total / rate:,.0f} s,"
            f" over the {budget:,.0f} s budget"
        )
    if more:
        runs.append(await publish(url, lines, ids, dealt(first, first + more), window=window))
    seconds = time.perf_counter() - started
    rejected: dict[str, int] = {}
    for r in runs:
        for reason, n in r.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
    accepted = sum(r.accepted for r in runs)
    answered = accepted + sum(rejected.values())
    return {
        "method": f"WebSocket EVENTs, {publishers} connections x {window} in flight",
        "requested": total,
        "loaded": first + more,
        "truncated": first + more < total,
        "budget_s": budget,
        "probe_events_per_s": round(rate, 1),
        "sent": sum(r.sent for r in runs),
        "accepted": accepted,
        "rejected": dict(sorted(rejected.items())),
        "unanswered": sum(r.unanswered for r in runs),
        "seconds": round(seconds, 2),
        "events_per_s": round(answered / seconds, 1) if seconds > 0 else 0.0,
    }


@dataclass
class PaginationResult:
    limit: int
    expected: int
    pages: int = 0
    events: int = 0
    exact: bool = False
    missing: int = 0
    missing_at_until: int = 0
    """Missing notes whose created_at was a page's ``until``: a relay that takes ``until``
    as exclusive skips one note at every page boundary."""
    extra: int = 0
    repeated: int = 0
    out_of_order: int = 0
    errors: int = 0
    error: str | None = None
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    sizes: list[int] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        # The page statistics leave out a final empty page (the one that finds the end).
        timed = [t for t, n in zip(self.latencies, self.sizes, strict=True) if n]
        tenth = max(1, len(timed) // 10)
        first, last = sorted(timed[:tenth]), sorted(timed[-tenth:])

        def ms(values: list[float], q: float) -> float | None:
            return round(percentile(values, q) * 1000, 3) if values else None

        first_p50, last_p50 = ms(first, 50), ms(last, 50)
        first_p99, last_p99 = ms(first, 99), ms(last, 99)
        return {
            "limit": self.limit,
            "expected": self.expected,
            "events": self.events,
            "pages": self.pages,
            "pages_per_s": round(self.pages / self.seconds, 1) if self.seconds > 0 else 0.0,
            "walk_seconds": round(self.seconds, 3),
            "exact": self.exact,
            "missing": self.missing,
            "missing_at_until": self.missing_at_until,
            "extra": self.extra,
            "repeated": self.repeated,
            "out_of_order": self.out_of_order,
            "mismatches": self.missing + self.extra + self.repeated + self.out_of_order,
            "errors": self.errors,
            "error": self.error,
            "pages_per_tenth": tenth,
            "first_pages": {"p50_ms": first_p50, "p99_ms": first_p99},
            "last_pages": {"p50_ms": last_p50, "p99_ms": last_p99},
            "last_over_first_p50": round(last_p50 / first_p50, 2)
            if first_p50 and last_p50 is not None
            else None,
            "last_over_first_p99": round(last_p99 / first_p99, 2)
            if first_p99 and last_p99 is not None
            else None,
            "page_latency": latency_summary(timed),
            "slowest_page": 1 + max(range(len(timed)), key=timed.__getitem__) if timed else None,
            "page_ms": [round(t * 1000, 2) for t in self.latencies],
        }


class _PageError(Exception):
    pass


async def walk(
    url: str,
    pubkey: str,
    expected: Sequence[str],
    expected_times: Sequence[int],
    *,
    limit: int,
    max_limit: int,
    timeout: float = 60.0,
) -> PaginationResult:
    """Walk the author's notes back with ``until`` and check them against ``expected``
    (their ids, newest first) and ``expected_times`` (their created_at values)."""
    page_size = min(limit, max_limit)
    result = PaginationResult(limit=limit, expected=len(expected))
    got: list[EventIdTime] = []
    max_pages = 2 * len(expected) // max(1, page_size) + 10
    conn = await QueryConnection.open(url)
    start = time.perf_counter()
    until: int | None = None
    untils: list[int] = []
    try:
        while result.pages < max_pages:
            flt: dict[str, Any] = {"authors": [pubkey], "kinds": [1], "limit": limit}
            if until is not None:
                flt["until"] = until
            sent = time.perf_counter()
            page = await request(conn, f"page{result.pages}", flt, timeout, EventIdTime)
            result.latencies.append(time.perf_counter() - sent)
            result.sizes.append(len(page))
            result.pages += 1
            got += page
            if len(page) < page_size:
                break
            oldest = min(ev.created_at for ev in page)
            if until is not None and oldest > until:
                raise _PageError(f"page {result.pages} did not move back past until={until}")
            until = oldest - 1
            untils.append(until)
        else:
            raise _PageError(f"no end after {max_pages} pages")
    except Exception as exc:
        result.errors += 1
        result.error = repr(exc)[:300]
    finally:
        result.seconds = time.perf_counter() - start
        conn.close()
    ids = [ev.id for ev in got]
    result.events = len(ids)
    result.exact = ids == list(expected)
    seen = set(ids)
    want = set(expected)
    result.repeated = len(ids) - len(seen)
    result.missing = len(want - seen)
    missing_times = {t for i, t in zip(expected, expected_times, strict=True) if i not in seen}
    result.missing_at_until = sum(1 for u in untils if u in missing_times)
    result.extra = len(seen - want)
    result.out_of_order = sum(1 for a, b in itertools.pairwise(got) if b.created_at >= a.created_at)
    return result
