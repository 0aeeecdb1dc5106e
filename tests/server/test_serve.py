"""The zero-setup path: `fitrelay serve` with no DSN runs its own PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.client import RawClient
from tests.signer import Keys

LISTENING = re.compile(rb"listening on (ws://[\d.]+:\d+)")


async def start_serve(data_dir: Path, cwd: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    env["FITRELAY_METRICS_LISTEN"] = "127.0.0.1:0"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "serve", "--data-dir", str(data_dir), "--port", "0",
        cwd=cwd, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = b""
    async with asyncio.timeout(60):
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise AssertionError(f"serve exited early:\n{seen.decode()}")
            seen += line
            match = LISTENING.search(line)
            if match:
                break
    # Keep draining stderr so the relay never blocks on a full pipe.
    asyncio.get_running_loop().create_task(proc.stderr.read())
    return proc, match.group(1).decode()


async def stop_serve(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        return await proc.wait()


def postgres_running(cluster: Path) -> bool:
    pid_file = cluster / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_serve_without_dsn_keeps_data_and_stops_its_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    event = Keys(1).sign(1, "stored by the embedded database")

    proc, url = await start_serve(data_dir, tmp_path)
    try:
        client = await RawClient.open(url)
        assert await client.publish(event) == ["OK", event["id"], True, ""]
        await client.close()
    finally:
        assert await stop_serve(proc) == 0
    cluster = data_dir / "postgres" / "pg"
    assert (cluster / "PG_VERSION").exists()
    assert not postgres_running(cluster)

    proc, url = await start_serve(data_dir, tmp_path)
    try:
        client = await RawClient.open(url)
        assert await client.req("s", {"ids": [event["id"]]}) == [event]
        await client.close()
    finally:
        assert await stop_serve(proc) == 0
    assert not postgres_running(cluster)


@pytest.mark.slow
async def test_sigterm_commits_what_was_received_and_says_why(tmp_path: Path) -> None:
    """Graceful shutdown: EVENTs already received are committed and answered, connections
    close with 1001 and a reason, and the embedded PostgreSQL stops last (with the data)."""
    data_dir = tmp_path / "var"
    keys = Keys(4)
    events = [keys.sign(1, f"in flight {i}", created_at=1_700_000_000 + i) for i in range(300)]
    proc, url = await start_serve(data_dir, tmp_path)
    client = await RawClient.open(url)
    acknowledged: set[str] = set()
    try:
        for event in events:  # no waiting: all of them in flight at once
            await client.send(["EVENT", event])
        proc.send_signal(signal.SIGTERM)
        try:
            while True:
                reply = await client.recv()
                if reply[0] == "OK" and reply[2] is True:
                    acknowledged.add(reply[1])
        except ConnectionClosed:
            pass
        assert client.ws.close_code == 1001
        assert client.ws.close_reason == "relay shutting down"
    finally:
        await client.close()
        async with asyncio.timeout(60):
            assert await proc.wait() == 0
    assert not postgres_running(data_dir / "postgres" / "pg")
    proc, url = await start_serve(data_dir, tmp_path)
    try:
        reader = await RawClient.open(url)
        stored = {e["id"] for e in await reader.req("s", {"authors": [keys.pubkey], "limit": 500})}
        await reader.close()
    finally:
        assert await stop_serve(proc) == 0
    assert acknowledged, "some EVENTs were answered before the close"
    assert acknowledged <= stored  # OK true always meant committed
