"""Helpers of the fault tests: a ``fitrelay serve`` or ``fitrelay index`` subprocess on a
given DSN, and a publisher that keeps a window of EVENTs in flight and records every answer."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from websockets.exceptions import ConnectionClosed

from tests.client import RawClient
from tests.signer import Keys

LISTENING = re.compile(rb"listening on (ws://[\d.]+:\d+)")
FOLLOWING = re.compile(rb"indexer: following the log")
START_TIMEOUT = 60.0


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    url: str
    log: list[bytes] = field(default_factory=list)
    grew: asyncio.Event = field(default_factory=asyncio.Event)

    def kill(self) -> None:
        self.proc.kill()

    async def wait(self, timeout: float = 30.0) -> int:
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        return await self.wait()

    async def wait_for_log(self, pattern: re.Pattern[bytes], timeout: float = 30.0) -> None:
        """Wait until a line of the process's log (seen so far or still to come) matches."""
        async with asyncio.timeout(timeout):
            while not any(pattern.search(line) for line in self.log):
                self.grew.clear()
                await self.grew.wait()


async def start(
    command: str, dsn: str, cwd: Path, *args: str, ready: re.Pattern[bytes] = LISTENING
) -> Process:
    """Start ``fitrelay <command>`` on ``dsn`` and wait until its log shows ``ready``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    env["FITRELAY_METRICS_LISTEN"] = ""
    extra = ["--port", "0"] if command == "serve" else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", command, "--db-dsn", dsn, *extra, *args,
        cwd=cwd, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    process = Process(proc, "")
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise AssertionError(b"".join(process.log).decode())
            process.log.append(line)
            match = ready.search(line)
            if match:
                break
    if match.groups():
        process.url = match.group(1).decode()

    async def drain() -> None:  # never let the relay block on a full pipe
        assert proc.stderr is not None
        async for line in proc.stderr:
            process.log.append(line)
            process.grew.set()

    asyncio.get_running_loop().create_task(drain())
    return process


@dataclass
class Publisher:
    """Sends events over one connection with up to ``window`` unanswered, records answers."""

    client: RawClient
    window: int
    acknowledged: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    """Event id -> the message of its OK false."""
    acked_at: list[float] = field(default_factory=list)
    refused_at: list[float] = field(default_factory=list)
    closed: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on every answer (and when the connection closes)."""
    stopping: bool = False

    async def until(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait, answer by answer, until ``done()``."""
        async with asyncio.timeout(timeout):
            while not done():
                self.answered.clear()
                await self.answered.wait()

    async def publish(self, events: Iterable[dict[str, Any]]) -> None:
        """Send events, keeping the window full, until they run out, :attr:`stopping` is
        set or the connection closes; returns once everything sent is answered."""
        slots = asyncio.Semaphore(self.window)
        pending: set[str] = set()
        reader = asyncio.create_task(self._read(slots, pending))
        try:
            for event in events:
                await slots.acquire()
                if reader.done() or self.stopping:
                    break
                pending.add(event["id"])
                await self.client.send(["EVENT", event])
        except ConnectionClosed:
            pass
        try:
            await self.until(lambda: not pending or reader.done())
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, slots: asyncio.Semaphore, pending: set[str]) -> None:
        try:
            while True:
                reply = await self.client.recv(timeout=60.0)
                if reply[0] != "OK":
                    continue
                event_id, accepted, message = reply[1], reply[2], reply[3]
                pending.discard(event_id)
                if accepted:
                    self.acknowledged.add(event_id)
                    self.acked_at.append(time.monotonic())
                else:
                    self.refused[event_id] = message
                    self.refused_at.append(time.monotonic())
                slots.release()
                self.answered.set()
        except ConnectionClosed:
            self.closed = True
            self.answered.set()
            for _ in range(self.window):
                slots.release()


def numbered(keys: Keys, prefix: str) -> Iterator[dict[str, Any]]:
    """Distinct events without end."""
    for i in itertools.count():
        yield keys.sign(1, f"{prefix} {i}", created_at=1_700_000_000 + i % 1_000_000)


async def stored_ids(dsn: str, ids: set[str]) -> set[str]:
    """Those of ``ids`` that the database holds."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT encode(id, 'hex') AS id FROM events WHERE id = ANY($1::bytea[])",
            [bytes.fromhex(i) for i in ids],
        )
    finally:
        await conn.close()
    return {row["id"] for row in rows}
