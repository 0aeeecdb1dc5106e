"""bench.pagination.walk against a small in-process relay: the checks and the statistics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from bench.pagination import walk

PK = "e" * 64
NOTES = [
    {
        "id": f"{i:064x}",
        "pubkey": PK,
        "created_at": 10_000 - i,
        "kind": 1,
        "tags": [],
        "content": f"note {i}",
        "sig": "0" * 128,
    }
    for i in range(1, 1_001)
]
IDS = [n["id"] for n in NOTES]
TIMES = [n["created_at"] for n in NOTES]

Answer = Callable[[dict[str, Any]], list[dict[str, Any]]]


def nip01(flt: dict[str, Any]) -> list[dict[str, Any]]:
    until = flt.get("until", 1 << 40)
    return [n for n in NOTES if n["created_at"] <= until][: flt["limit"]]


def exclusive_until(flt: dict[str, Any]) -> list[dict[str, Any]]:
    until = flt.get("until", 1 << 40)
    return [n for n in NOTES if n["created_at"] < until][: flt["limit"]]


@asynccontextmanager
async def relay(answer: Answer, spaced: bool = False) -> AsyncIterator[str]:
    """A relay answering REQs with ``answer``; ``spaced`` writes JSON with spaces, as the
    client's fast path does not expect (it must fall back to a full decode)."""
    separators = (", ", ": ") if spaced else (",", ":")

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            msg = json.loads(message)
            if msg[0] != "REQ":
                continue
            for note in answer(msg[2]):
                await ws.send(json.dumps(["EVENT", msg[1], note], separators=separators))
            await ws.send(json.dumps(["EOSE", msg[1]]))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def test_walk_returns_every_note_once_in_order() -> None:
    for spaced in (False, True):
        async with relay(nip01, spaced) as url:
            r = await walk(url, PK, IDS, TIMES, limit=100, max_limit=5000)
        s = r.summary()
        assert s["exact"] and s["events"] == 1000 and s["mismatches"] == 0 and s["errors"] == 0
        # Ten full pages, then the empty one that finds the end (left out of the tenths).
        assert s["pages"] == 11 and s["pages_per_tenth"] == 1
        assert s["first_pages"]["p50_ms"] > 0 and s["last_pages"]["p50_ms"] > 0
        assert s["page_latency"]["n"] == 10


async def test_walk_counts_what_an_exclusive_until_skips() -> None:
    async with relay(exclusive_until) as url:
        r = await walk(url, PK, IDS, TIMES, limit=100, max_limit=5000)
    s = r.summary()
    assert not s["exact"]
    # Every page after the first misses the note at its `until`: 100, then 101 notes
    # consumed a page, the tenth page short (91), so 9 skipped.
    assert s["missing"] == s["missing_at_until"] == s["pages"] - 1 == 9
    assert s["events"] == 991 and s["extra"] == s["repeated"] == s["out_of_order"] == 0


async def test_walk_stops_when_until_is_ignored() -> None:
    async with relay(lambda flt: NOTES[: flt["limit"]]) as url:
        r = await walk(url, PK, IDS, TIMES, limit=100, max_limit=5000)
    s = r.summary()
    assert s["errors"] == 1 and "did not move back" in s["error"]
    assert s["pages"] == 2 and s["repeated"] == 100 and s["missing"] == 900
