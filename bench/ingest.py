"""Durable ingest: publishers keep a window of EVENTs in flight and time each OK.

A relay may only answer ``OK true`` once the event is stored, so events/s counts OKs per
second of wall time from the first EVENT sent to the last OK received, and latency is the
time from sending an EVENT to its OK. Each author's events go to one connection in file
order, so replacements and deletions reach the relay after what they replace or delete.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bench.common import latency_summary, open_ws

__all__ = ["IngestResult", "partition_by_author", "publish"]

_decode = msgspec.json.Decoder().decode


@dataclass
class IngestResult:
    connections: int
    window: int
    sent: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    notices: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def answered(self) -> int:
        return self.accepted + sum(self.rejected.values())

    def summary(self) -> dict[str, Any]:
        rate = self.answered / self.seconds if self.seconds > 0 else 0.0
        return {
            "connections": self.connections,
            "window": self.window,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "unanswered": self.unanswered,
            "notices": self.notices,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(rate, 1),
            "ok_latency": latency_summary(self.latencies),
        }


def partition_by_author(pubkeys: Sequence[str], connections: int) -> list[list[int]]:
    """Indexes into the event list for each connection: every author on one connection,
    authors spread so that connections carry about the same number of events, each list
    in the original order."""
    counts = collections.Counter(pubkeys)
    heap = [(0, c) for c in range(connections)]
    owner: dict[str, int] = {}
    for author, count in counts.most_common():
        load, conn = heapq.heappop(heap)
        owner[author] = conn
        heapq.heappush(heap, (load + count, conn))
    parts: list[list[int]] = [[] for _ in range(connections)]
    for i, pk in enumerate(pubkeys):
        parts[owner[pk]].append(i)
    return parts


def _reason(message: object) -> str:
    text = str(message)
    prefix = text.split(":", 1)[0].strip() if ":" in text else text.strip()
    return prefix[:40] or "(no reason)"


async def publish(
    url: str,
    lines: Sequence[bytes],
    ids: Sequence[str],
    parts: Sequence[Sequence[int]],
    *,
    window: int,
    time_limit: float | None = None,
    stall_timeout: float = 60.0,
) -> IngestResult:
    """Send ``lines[i]`` for every i in ``parts[c]`` over connection c, ``window`` in flight.

    With ``time_limit``, publishers stop sending new events after that many seconds and
    wait for the outstanding OKs.
    """
    result = IngestResult(connections=len(parts), window=window)
    conns = [await open_ws(url) for _ in parts]
    start = time.perf_counter()
    deadline = None if time_limit is None else start + time_limit
    last_ok = [start]

    async def run(ws: Any, indexes: Sequence[int]) -> None:
        inflight: dict[str, float] = {}
        order: collections.deque[str] = collections.deque()
        slots = asyncio.Semaphore(window)
        drained = asyncio.Event()
        drained.set()

        async def reader() -> None:
            try:
                await read()
            finally:
                # The connection ended: wake the sender, which then stops.
                drained.set()
                for _ in range(window):
                    slots.release()

        async def read() -> None:
            async for message in ws:
                now = time.perf_counter()
                reply = _decode(message)
                if not isinstance(reply, list) or not reply:
                    continue
                if reply[0] == "NOTICE":
                    result.notices += 1
                    continue
                if reply[0] != "OK" or len(reply) < 3:
                    continue
                event_id = reply[1]
                if event_id not in inflight:
                    # Some relays answer errors with an empty id: take the oldest pending.
                    while order and order[0] not in inflight:
                        order.popleft()
                    if not order:
                        continue
                    event_id = order[0]
                sent_at = inflight.pop(event_id)
                result.latencies.append(now - sent_at)
                if reply[2] is True:
                    result.accepted += 1
                else:
                    reason = _reason(reply[3] if len(reply) > 3 else "")
                    result.rejected[reason] = result.rejected.get(reason, 0) + 1
                last_ok[0] = now
                slots.release()
                if not inflight:
                    drained.set()

        task = asyncio.create_task(reader())
        try:
            for i in indexes:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                try:
                    await asyncio.wait_for(slots.acquire(), stall_timeout)
                except TimeoutError:
                    break
                if task.done():
                    break
                event_id = ids[i]
                inflight[event_id] = time.perf_counter()
                order.append(event_id)
                drained.clear()
                result.sent += 1
                await ws.send(b'["EVENT",' + lines[i] + b"]", text=True)
            try:
                await asyncio.wait_for(drained.wait(), stall_timeout)
            except TimeoutError:
                pass
            result.unanswered += len(inflight)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ws.close()

    await asyncio.gather(*(run(ws, p) for ws, p in zip(conns, parts, strict=True)))
    result.seconds = last_ok[0] - start
    return result
