"""Several relay hosts on one primary: ``fitrelay serve`` processes on separate loopback
addresses (127.0.0.2, .3, .4: one port each, as separate machines would have), each with its
own caches, meet only in PostgreSQL. A subscriber on one host sees every event published on
the others exactly once, through the log and NOTIFY, also while a publishing host restarts.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.client import RawClient
from tests.signer import Keys, unique_content

pytestmark = pytest.mark.slow

LISTENING = re.compile(rb"listening on ws://")
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Host:
    """One ``fitrelay serve`` process on its own address."""

    def __init__(self, address: str, port: int, dsn: str, config: Path) -> None:
        self.address, self.port, self.dsn, self.config = address, port, dsn, config
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[bytes] | None = None
        self.ready = asyncio.Event()
        """Set while the process is listening."""

    @property
    def url(self) -> str:
        return f"ws://{self.address}:{self.port}"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
        self.proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", "serve", "--config", str(self.config),
            "--host", self.address, "--port", str(self.port), "--db-dsn", self.dsn,
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        async with asyncio.timeout(60):
            while True:
                line = await proc.stderr.readline()
                assert line, f"{self.address}: serve exited early"
                if LISTENING.search(line):
                    break
        self._drain = asyncio.create_task(proc.stderr.read())
        self.ready.set()

    async def stop(self) -> None:
        self.ready.clear()
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await self.proc.wait()
        if self._drain is not None:
            await self._drain
        self.proc = None


class Publisher:
    """Publishes on one host until every event has its OK true, reconnecting (and sending
    again the event whose OK it did not get) when the host goes away."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.stored: list[str] = []
        self.client: RawClient | None = None
        self.reconnects = 0

    async def publish(self, event: dict[str, Any]) -> None:
        async with asyncio.timeout(60):
            while True:
                try:
                    if self.client is None:
                        await self.host.ready.wait()
                        self.client = await RawClient.open(self.host.url)
                    reply = await self.client.publish(event)
                except (OSError, ConnectionClosed):  # the host is restarting
                    self.client = None
                    self.reconnects += 1
                    continue
                assert reply[0] == "OK" and reply[2] is True, reply
                self.stored.append(event["id"])
                return

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def test_every_event_crosses_hosts_exactly_once_across_a_restart(
    db_dsn: str, tmp_path: Path
) -> None:
    config = tmp_path / "host.toml"
    config.write_text('[indexer]\nenabled = false\n[metrics]\nlisten = ""\n')
    port = _free_port(HOSTS[0])
    hosts = [Host(address, port, db_dsn, config) for address in HOSTS]
    await asyncio.gather(*(host.start() for host in hosts))
    subscriber = await RawClient.open(hosts[0].url)
    publishers = [Publisher(hosts[1]), Publisher(hosts[2])]
    keys = [Keys(61), Keys(62)]
    authors = [k.sign()["pubkey"] for k in keys]
    received: Counter[str] = Counter()
    try:
        assert await subscriber.req("all", {"kinds": [1], "authors": authors}) == []

        async def stream(n: int, count: int) -> None:
            for _ in range(count):
                await publishers[n].publish(keys[n].sign(1, unique_content(f"host{n}")))

        # Both publishing hosts stream; one restarts in the middle of it.
        first = [asyncio.create_task(stream(0, 60)), asyncio.create_task(stream(1, 30))]
        await first[1]
        second = asyncio.create_task(stream(1, 30))  # still publishing while it stops
        await hosts[2].stop()
        await hosts[2].start()
        await asyncio.gather(second, first[0])
        assert publishers[1].reconnects >= 1
        # A last event through the host that did not restart marks the end of the stream:
        # the log hands events to every host in order, so it arrives after all the others.
        marker = keys[0].sign(1, "end of stream")
        await publishers[0].publish(marker)
        expected = set(publishers[0].stored) | set(publishers[1].stored)
        assert len(expected) == 121
        async with asyncio.timeout(30):
            while marker["id"] not in received:
                reply = await subscriber.recv()
                assert reply[0] == "EVENT" and reply[1] == "all", reply
                received[reply[2]["id"]] += 1
        assert set(received) == expected
        assert max(received.values()) == 1
    finally:
        await subscriber.close()
        for publisher in publishers:
            await publisher.close()
        await asyncio.gather(*(host.stop() for host in hosts), return_exceptions=True)
