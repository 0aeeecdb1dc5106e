"""`fitrelay serve --workers 2`: two processes share one port, and an event published to one
reaches a subscriber on the other (through the log and NOTIFY, not shared memory)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys

import pytest

from tests.client import RawClient
from tests.server.test_metrics import http_get
from tests.signer import Keys

LISTENING = re.compile(rb"listening on ws://")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _connections(metrics_ports: list[int]) -> list[float]:
    counts = []
    for port in metrics_ports:
        _, text = await http_get(port, "/metrics")
        match = re.search(r"^fitrelay_connections (\S+)$", text, re.MULTILINE)
        assert match, text[:200]
        counts.append(float(match.group(1)))
    return counts


@pytest.mark.slow
async def test_an_event_crosses_worker_processes(db_dsn: str) -> None:
    port, metrics = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    env["FITRELAY_METRICS_LISTEN"] = f"127.0.0.1:{metrics}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "serve", "--workers", "2", "--port", str(port),
        "--db-dsn", db_dsn, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    clients: list[tuple[RawClient, int]] = []
    try:
        async with asyncio.timeout(60):
            ready = 0
            while ready < 2:
                line = await proc.stderr.readline()
                assert line, "serve exited early"
                ready += bool(LISTENING.search(line))
        asyncio.get_running_loop().create_task(proc.stderr.read())
        ports = [metrics, metrics + 1]
        # Connect until both workers hold a client; note which worker took each one.
        async with asyncio.timeout(60):
            while {worker for _, worker in clients} != {0, 1}:
                before = await _connections(ports)
                client = await RawClient.open(f"ws://127.0.0.1:{port}")
                while (after := await _connections(ports)) == before:
                    await asyncio.sleep(0.01)
                clients.append((client, 0 if after[0] > before[0] else 1))
        for metrics_port in ports:  # each worker froze what it allocated before serving
            _, text = await http_get(metrics_port, "/metrics")
            frozen = re.search(r"^fitrelay_gc_frozen_objects (\S+)$", text, re.MULTILINE)
            assert frozen and float(frozen.group(1)) > 1_000, text[:200]
        publisher = next(c for c, worker in clients if worker == 0)
        remote = next(c for c, worker in clients if worker == 1)
        assert await remote.req("live", {"kinds": [1]}) == []
        event = Keys(9).sign(1, "from worker 0")
        assert (await publisher.publish(event))[2] is True
        delivered = await remote.expect("EVENT")
        assert delivered[1:] == ["live", event]
    finally:
        for client, _ in clients:
            await client.close()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
    assert code == 0
