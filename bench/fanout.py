"""Live fan-out: S subscriptions on one filter, a publisher, delivery latency at each one.

Subscribers live in worker processes (so the client's own CPU is spread out), each holding
its share of connections with ``subs_per_conn`` subscriptions each. Once every subscription
has had its EOSE, the publisher sends ``events`` fresh events matching the filter, one at a
time: it waits for the OK and then ``interval`` seconds. Every delivery is timed against the
moment its EVENT was sent (publish-to-delivery, which includes the durable commit) and the
moment its OK arrived (OK-to-delivery; negative when a relay delivers before it answers).
All timestamps are CLOCK_MONOTONIC, which every process on the machine shares.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import secp256k1

from bench.common import (
    decode_event_id,
    event_prefix,
    gather_limited,
    latency_summary,
    open_ws,
    raise_nofile,
)
from bench.frames import FrameSocket
from relay.nostr.event import canonical_bytes

__all__ = ["FanoutResult", "run_fanout"]

_decode = msgspec.json.Decoder().decode


@dataclass
class FanoutResult:
    subscriptions: int
    connections: int
    events: int
    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    setup_seconds: float = 0.0
    failed_connections: int = 0
    send_to_delivery: list[float] = field(default_factory=list, repr=False)
    ok_to_delivery: list[float] = field(default_factory=list, repr=False)
    publish_ok: list[float] = field(default_factory=list, repr=False)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        lags = sorted(self.ok_to_delivery)
        return {
            "subscriptions": self.subscriptions,
            "connections": self.connections,
            "events": self.events,
            "expected_deliveries": self.expected,
            "delivered": self.delivered,
            "delivered_pct": round(100 * self.delivered / self.expected, 2) if self.expected else 0,
            "duplicates": self.duplicates,
            "failed_connections": self.failed_connections,
            "setup_seconds": round(self.setup_seconds, 2),
            "publish_to_delivery": latency_summary(self.send_to_delivery),
            "ok_to_delivery": latency_summary(lags),
            "publish_ok": latency_summary(self.publish_ok),
            "error": self.error,
        }


# -- the subscriber worker process ----------------------------------------------------------


def _worker(
    url: str, conns: int, subs_per_conn: int, flt: dict[str, Any], pipe: Connection
) -> None:
    raise_nofile(conns + 256)
    try:
        import uvloop

        uvloop.run(_subscribe(url, conns, subs_per_conn, flt, pipe))
    except ImportError:  # pragma: no cover
        asyncio.run(_subscribe(url, conns, subs_per_conn, flt, pipe))


async def _subscribe(
    url: str, conns: int, subs_per_conn: int, flt: dict[str, Any], pipe: Connection
) -> None:
    ready = [0]

    async def one(index: int) -> Any:
        ws = await open_ws(url)
        for s in range(subs_per_conn):
            await ws.send(msgspec.json.encode(["REQ", f"fan{index}-{s}", flt]), text=True)
        waiting = subs_per_conn
        async with asyncio.timeout(120):
            while waiting:
                reply = _decode(await ws.recv())
                if reply[0] in ("EOSE", "CLOSED"):
                    waiting -= 1
        ready[0] += 1
        return ws

    opened = await gather_limited([functools.partial(one, i) for i in range(conns)], 50)
    sockets = [ws for ws in opened if not isinstance(ws, BaseException)]
    failed = len(opened) - len(sockets)

    frames: list[tuple[bytes, float]] = []

    def received(message: bytes, at: float) -> None:
        frames.append((message, at))  # decoded once the measurement is over

    readers = [FrameSocket.take_over(ws, received) for ws in sockets]
    pipe.send(("ready", failed))
    loop = asyncio.get_running_loop()
    command = await loop.run_in_executor(None, pipe.recv)
    expected_each, settle = command[1], command[2]
    want = expected_each * len(sockets) * subs_per_conn
    stop_at = time.monotonic() + settle
    while len(frames) < want and time.monotonic() < stop_at:
        await asyncio.sleep(0.02)
    pipe.send(("done", _arrivals(frames)))
    for reader in readers:
        reader.close()


def _arrivals(frames: list[tuple[bytes, float]]) -> list[tuple[str, str, float]]:
    """(subscription, event id, arrival time) of each EVENT frame received."""
    prefix = event_prefix()
    arrivals = []
    for message, at in frames:
        if message.startswith(prefix):
            _, sub, event = decode_event_id(message)
            arrivals.append((sub, event.id, at))
            continue
        reply = _decode(message)
        if reply[0] == "EVENT":
            arrivals.append((reply[1], reply[2]["id"], at))
    return arrivals


# -- the publisher --------------------------------------------------------------------------


async def run_fanout(
    url: str,
    *,
    subscriptions: int,
    subs_per_conn: int,
    events: int,
    interval: float,
    workers: int,
    tag: str,
    settle: float = 10.0,
) -> FanoutResult:
    """Time live delivery to ``subscriptions`` subscriptions of ``{"kinds":[1],"#t":[tag]}``."""
    conns = -(-subscriptions // subs_per_conn)
    workers = max(1, min(workers, conns))
    result = FanoutResult(subscriptions=conns * subs_per_conn, connections=conns, events=events)
    flt = {"kinds": [1], "#t": [tag]}
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    shares = [conns // workers + (1 if w < conns % workers else 0) for w in range(workers)]
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        for share in shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(url, share, subs_per_conn, flt, child))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        for pipe in pipes:
            if not await loop.run_in_executor(None, pipe.poll, 300):
                raise TimeoutError("a subscriber worker did not get ready in 300 s")
            _, failed = pipe.recv()
            result.failed_connections += failed
        result.setup_seconds = time.perf_counter() - started
        live = (conns - result.failed_connections) * subs_per_conn
        result.expected = live * events

        secret = hashlib.sha256(f"fitrelay-bench-fanout-{os.getpid()}".encode()).digest()
        key = secp256k1.PrivateKey(secret, raw=True)
        pubkey = key.pubkey.serialize()[1:].hex()
        sent_at: dict[str, float] = {}
        ok_at: dict[str, float] = {}
        ws = await open_ws(url)
        try:
            for i in range(events):
                created = int(time.time())
                tags = [["t", tag]]
                content = f"fan-out probe {i}"
                serial = canonical_bytes(pubkey, created, 1, tags, content)
                digest = hashlib.sha256(serial).digest()
                event = {
                    "id": digest.hex(),
                    "pubkey": pubkey,
                    "created_at": created,
                    "kind": 1,
                    "tags": tags,
                    "content": content,
                    "sig": key.schnorr_sign(digest, None, raw=True).hex(),
                }
                frame = msgspec.json.encode(["EVENT", event])
                sent_at[event["id"]] = time.monotonic()
                await ws.send(frame, text=True)
                async with asyncio.timeout(60):
                    while True:
                        reply = _decode(await ws.recv())
                        if reply[0] == "OK":
                            break
                ok_at[event["id"]] = time.monotonic()
                result.publish_ok.append(ok_at[event["id"]] - sent_at[event["id"]])
                await asyncio.sleep(interval)
        finally:
            await ws.close()
        for pipe in pipes:
            pipe.send(("stop", events, settle))
        seen: set[tuple[int, str, str]] = set()
        for w, pipe in enumerate(pipes):
            if not await loop.run_in_executor(None, pipe.poll, settle + 120):
                raise TimeoutError("a subscriber worker did not report")
            _, arrivals = pipe.recv()
            for sub, event_id, t in arrivals:
                if event_id not in sent_at:
                    continue
                if (w, sub, event_id) in seen:
                    result.duplicates += 1
                    continue
                seen.add((w, sub, event_id))
                result.delivered += 1
                result.send_to_delivery.append(t - sent_at[event_id])
                result.ok_to_delivery.append(t - ok_at[event_id])
    except Exception as exc:
        result.error = repr(exc)[:300]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    return result
