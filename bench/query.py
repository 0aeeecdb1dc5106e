"""REQ benchmarks: time to EOSE and queries/s per filter shape, every answer checked.

Query parameters are drawn from the generated main set with a fixed seed, so every relay
gets the same queries; their expected answers come from :class:`bench.model.Model`. An
answer is *exact* when it is the expected list in the expected order, *order* when it holds
the right events in another order, and *wrong* otherwise (missing, extra or repeated
events); *errors* are CLOSED, NOTICE instead of EOSE, timeouts and dropped connections.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from bench.common import (
    EventId,
    EventIdTime,
    decode_event_id,
    decode_event_id_time,
    event_prefix,
    latency_summary,
    open_ws,
)
from bench.frames import FrameSocket
from bench.generate import END_TIME
from bench.model import Ev, Model

__all__ = [
    "MIXED_SHAPES",
    "SHAPES",
    "QueryConnection",
    "QueryError",
    "ShapeResult",
    "expected_answers",
    "make_queries",
    "request",
    "run_shape",
]

_S = TypeVar("_S", bound=msgspec.Struct)

_decode = msgspec.json.Decoder().decode

SHAPES: dict[str, str] = {
    "ids": "ids (1-20 ids)",
    "authors_kinds": "authors + kinds, limit",
    "e_tag": "#e (replies/reactions to an event)",
    "p_tag": "#p (mentions of a pubkey)",
    "t_tag": "#t (hashtag)",
    "d_tag": "#d",
    "kind_window": "kind + since/until + limit",
    "address": "addressable: kind + author + #d",
    "library": "exercise library: kinds [33401] + author",
    "mixed": "mixed: the shapes above in turn",
    "feed": "follow feed: a contact list's authors + kinds [1, 1301]",
}
"""Each REQ shape measured. ``mixed`` sends fresh queries of the shapes before it in turn,
``per_shape`` of each, over the same connections (a relay's traffic is not one shape).
``feed`` is what a client's home timeline asks for: the authors of one stored contact list
(up to 500 of them) and the note and workout kinds."""

MIXED_SHAPES = tuple(SHAPES)[: tuple(SHAPES).index("mixed")]
"""The shapes ``mixed`` draws from."""

_ADDRESSABLE = (33401, 33402, 30003, 30004)


Filters = dict[str, list[dict[str, Any]]]


def make_queries(events: Sequence[Ev], seed: int, per_shape: int) -> Filters:
    """``per_shape`` filters of each shape with parameters taken from ``events``."""
    rng = random.Random(seed * 7919 + 17)
    ids = [ev.id for ev in events]
    authors = [ev.pubkey for ev in events if ev.kind != 7] or [ev.pubkey for ev in events]
    e_refs = [t[1] for ev in events if ev.kind in (1, 7) for t in ev.tags if t[:1] == ["e"]]
    p_refs = [t[1] for ev in events if ev.kind in (1, 3, 7) for t in ev.tags if t[:1] == ["p"]]
    t_refs = [t[1] for ev in events for t in ev.tags if t[:1] == ["t"] and len(t) > 1]
    addressable = [ev for ev in events if ev.kind in _ADDRESSABLE]
    by_kind: dict[int, list[int]] = {}
    for ev in events:
        by_kind.setdefault(ev.kind, []).append(ev.created_at)
    exercise_authors = [ev.pubkey for ev in events if ev.kind == 33401] or authors
    follow_lists = [
        list(dict.fromkeys(t[1] for t in ev.tags if t[:1] == ["p"] and len(t) > 1))[:500]
        for ev in events
        if ev.kind == 3
    ]
    follow_lists = [f for f in follow_lists if f] or [list(dict.fromkeys(authors))[:50]]

    def d_of(ev: Ev) -> str:
        return next((t[1] for t in ev.tags if len(t) > 1 and t[0] == "d"), "")

    def one(shape: str) -> dict[str, Any]:
        if shape == "ids":
            return {"ids": rng.sample(ids, min(len(ids), rng.randint(1, 20)))}
        if shape == "authors_kinds":
            return {
                "authors": list(dict.fromkeys(rng.choices(authors, k=rng.randint(1, 5)))),
                "kinds": rng.choice([[1], [1301], [1, 1301], [1, 6, 7], [0, 3], [33401, 33402]]),
                "limit": rng.choice([20, 50, 100]),
            }
        if shape == "e_tag":
            return {"#e": [rng.choice(e_refs or ids)], "limit": 100}
        if shape == "p_tag":
            pk = rng.choice(p_refs) if p_refs and rng.random() < 0.5 else rng.choice(authors)
            flt: dict[str, Any] = {"#p": [pk], "limit": 100}
            if rng.random() < 0.3:
                flt["kinds"] = [1, 7]
            return flt
        if shape == "t_tag":
            tags = list(dict.fromkeys(rng.choices(t_refs or ["fitness"], k=rng.randint(1, 2))))
            return {"#t": tags, "limit": rng.choice([50, 100, 200])}
        if shape == "d_tag":
            return {"#d": [d_of(rng.choice(addressable))] if addressable else [""], "limit": 50}
        if shape == "kind_window":
            kind = rng.choice([1, 1, 1301, 1301, 7])
            times = by_kind.get(kind) or [0]
            window = rng.choice([3_600, 6 * 3_600, 86_400, 7 * 86_400])
            # Never past the main set's end: the stream events (newer) must not match.
            until = min(rng.choice(times) + rng.randint(0, window), END_TIME - 1)
            return {"kinds": [kind], "since": until - window, "until": until, "limit": 100}
        if shape == "address":
            if not addressable:
                return {"kinds": [33401], "authors": [rng.choice(authors)], "#d": [""]}
            ev = rng.choice(addressable)
            return {"kinds": [ev.kind], "authors": [ev.pubkey], "#d": [d_of(ev)]}
        if shape == "feed":
            return {"authors": rng.choice(follow_lists), "kinds": [1, 1301], "limit": 100}
        if shape == "library":
            pk = rng.choice(exercise_authors) if rng.random() < 0.8 else rng.choice(authors)
            return {"kinds": [33401], "authors": [pk]}
        raise ValueError(shape)

    queries = {shape: [one(shape) for _ in range(per_shape)] for shape in MIXED_SHAPES}
    turns = per_shape * len(MIXED_SHAPES)
    queries["mixed"] = [one(MIXED_SHAPES[i % len(MIXED_SHAPES)]) for i in range(turns)]
    queries["feed"] = [one("feed") for _ in range(per_shape)]
    return queries


@dataclass
class ShapeResult:
    shape: str
    queries: int = 0
    seconds: float = 0.0
    exact: int = 0
    order: int = 0
    wrong: int = 0
    errors: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    examples: list[dict[str, Any]] = field(default_factory=list)
    causes: dict[str, int] = field(default_factory=dict)
    """For every wrong answer, its extra and missing events counted by what the model says
    of them (e.g. ``extra: address deleted``, ``missing: stored``)."""

    def summary(self) -> dict[str, Any]:
        done = self.exact + self.order + self.wrong
        return {
            "queries": self.queries,
            "seconds": round(self.seconds, 3),
            "queries_per_s": round(self.queries / self.seconds, 1) if self.seconds > 0 else 0.0,
            "eose_latency": latency_summary(self.latencies),
            "events_per_query": round(self.events / done, 1) if done else 0.0,
            "exact": self.exact,
            "order_only": self.order,
            "wrong": self.wrong,
            "errors": self.errors,
            "mismatch_causes": dict(sorted(self.causes.items())),
            "examples": self.examples,
        }


class QueryError(Exception):
    """The relay ended a REQ with CLOSED or a NOTICE."""


_TERMINAL = (b'["EOSE"', b'["CLOSED"', b'["NOTICE"')


class QueryConnection:
    """One querying connection: REQ out, frames back until the answer ends (EOSE, CLOSED or
    a NOTICE), read by :class:`bench.frames.FrameSocket`."""

    def __init__(self, ws: Any) -> None:
        self.frames: list[bytes] = []
        self.sub = ""
        self.done: asyncio.Future[None] | None = None
        self.socket = FrameSocket.take_over(ws, self._message, self._lost)

    @classmethod
    async def open(cls, url: str) -> QueryConnection:
        return cls(await open_ws(url))

    def _message(self, payload: bytes, at: float) -> None:
        self.frames.append(payload)
        if self.done is None or self.done.done() or not payload.startswith(_TERMINAL):
            return
        reply = _decode(payload)
        if reply[0] == "NOTICE" or reply[1] == self.sub:
            self.done.set_result(None)

    def _lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    async def exchange(self, sub: str, request: bytes, timeout: float) -> list[bytes]:
        """Send ``request`` (a REQ for ``sub``); the frames received until its answer ends."""
        self.frames, self.sub = [], sub
        self.done = asyncio.get_running_loop().create_future()
        self.socket.send_text(request)
        async with asyncio.timeout(timeout):
            await self.done
        frames, self.frames = self.frames, []
        return frames

    def close(self) -> None:
        self.socket.close()


_FAST: dict[type[msgspec.Struct], Callable[[bytes], tuple[str, str, Any]]] = {
    EventId: decode_event_id,
    EventIdTime: decode_event_id_time,
}


async def request(
    conn: QueryConnection, sub: str, flt: dict[str, Any], timeout: float, struct: type[_S]
) -> list[_S]:
    """The events the relay sends for ``flt`` up to its EOSE, each decoded into ``struct``
    (:class:`bench.common.EventId` or :class:`bench.common.EventIdTime`); CLOSE after.

    An EVENT frame for ``sub`` written without spaces is decoded into just those fields,
    any other frame in full, so the client's CPU per event stays small beside the relay's."""
    frames = await conn.exchange(sub, msgspec.json.encode(["REQ", sub, flt]), timeout)
    got: list[_S] = []
    prefix = event_prefix(sub)
    fast = _FAST[struct]
    for frame in frames:
        if frame.startswith(prefix):
            got.append(fast(frame)[2])
            continue
        reply = _decode(frame)
        verb = reply[0]
        if verb == "EVENT" and reply[1] == sub:
            got.append(msgspec.convert(reply[2], struct))
        elif verb == "CLOSED" and reply[1] == sub:
            raise QueryError(f"CLOSED {reply[2] if len(reply) > 2 else ''}")
        elif verb == "NOTICE":
            raise QueryError(f"NOTICE {reply[1] if len(reply) > 1 else ''}")
    conn.socket.send_text(msgspec.json.encode(["CLOSE", sub]))
    return got


def _judge(
    result: ShapeResult,
    flt: dict[str, Any],
    want: list[str],
    got: list[str],
    explain: Callable[[str], str] | None,
    cause: Callable[[str], str] | None = None,
) -> None:
    result.events += len(got)
    if got == want:
        result.exact += 1
        return
    if len(got) == len(want) and set(got) == set(want):
        result.order += 1
        kind = "order"
    else:
        result.wrong += 1
        kind = "wrong"
    missing = [i for i in want if i not in set(got)]
    extra = [i for i in got if i not in set(want)]
    if cause is not None:
        for what, ids in (("extra", extra), ("missing", missing)):
            for i in ids:
                key = f"{what}: {cause(i)}"
                result.causes[key] = result.causes.get(key, 0) + 1
    if len(result.examples) < 3:
        result.examples.append(
            {
                "kind": kind,
                "filter": flt,
                "expected": len(want),
                "got": len(got),
                "missing": {i: explain(i) if explain else "" for i in missing[:3]},
                "extra": {i: explain(i) if explain else "" for i in extra[:3]},
            }
        )


async def run_shape(
    url: str,
    shape: str,
    filters: Sequence[dict[str, Any]],
    expected: Sequence[list[str]],
    *,
    concurrency: int,
    time_limit: float,
    timeout: float = 30.0,
    explain: Callable[[str], str] | None = None,
    cause: Callable[[str], str] | None = None,
) -> ShapeResult:
    """Run ``filters`` over ``concurrency`` connections until done or ``time_limit`` passes."""
    result = ShapeResult(shape)
    conns = [await QueryConnection.open(url) for _ in range(concurrency)]
    next_index = [0]
    start = time.perf_counter()
    deadline = start + time_limit

    async def worker(slot: int) -> None:
        conn = conns[slot]
        n = 0
        while time.perf_counter() < deadline:
            i = next_index[0]
            if i >= len(filters):
                break
            next_index[0] += 1
            n += 1
            sent = time.perf_counter()
            try:
                answer = await request(conn, f"q{slot}-{n}", filters[i], timeout, EventId)
                got = [event.id for event in answer]
            except Exception as exc:
                result.errors += 1
                result.queries += 1
                if len(result.examples) < 3:
                    error = repr(exc)[:200]
                    result.examples.append({"kind": "error", "filter": filters[i], "error": error})
                conn.close()
                conn = conns[slot] = await QueryConnection.open(url)
                continue
            result.latencies.append(time.perf_counter() - sent)
            result.queries += 1
            _judge(result, filters[i], expected[i], got, explain, cause)

    await asyncio.gather(*(worker(s) for s in range(concurrency)))
    result.seconds = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return result


def expected_answers(
    model: Model, queries: Filters, default_limit: int, max_limit: int
) -> dict[str, list[list[str]]]:
    return {
        shape: [model.answer(flt, default_limit, max_limit) for flt in filters]
        for shape, filters in queries.items()
    }
