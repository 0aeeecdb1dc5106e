"""The zero-setup path: `fitrelay serve` with no DSN runs its own PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

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
