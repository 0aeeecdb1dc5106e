"""One owner for the embedded PostgreSQL: commands run beside `fitrelay serve` use its
database without stopping it, and a second `serve` on the same data directory and port is
refused before it touches anything."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.client import RawClient
from tests.server.test_serve import postgres_running
from tests.signer import Keys

LISTENING = re.compile(rb"listening on (ws://[\d.]+:\d+)")
DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    env["FITRELAY_METRICS_LISTEN"] = "127.0.0.1:0"
    return env


async def fitrelay(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args, cwd=cwd, env=env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(DEADLINE):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_commands_beside_serve_leave_its_database_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = str(free_port())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "serve", "--data-dir", str(data_dir), "--port", port,
        cwd=tmp_path, env=env(), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(DEADLINE):
        while not (match := LISTENING.search(await proc.stderr.readline() or b"<eof>")):
            assert proc.returncode is None, "serve exited early"
    drain = asyncio.get_running_loop().create_task(proc.stderr.read())
    cluster = data_dir / "postgres" / "pg"
    try:
        code, _, err = await fitrelay(
            "serve", "--data-dir", str(data_dir), "--port", port, cwd=tmp_path
        )
        assert code == 1
        assert err.splitlines() == [
            f"fitrelay: a relay is already running on port {port} with data directory"
            f" {data_dir} (pid {proc.pid})"
        ]
        code, _, err = await fitrelay("export", "--data-dir", str(data_dir), cwd=tmp_path)
        assert code == 0, err
        assert postgres_running(cluster)
        client = await RawClient.open(match.group(1).decode())
        try:
            for n in range(2):
                event = Keys(n).sign(1, "stored after another command used the database")
                assert await client.publish(event) == ["OK", event["id"], True, ""]
        finally:
            await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            assert await proc.wait() == 0
        await drain
    assert not postgres_running(cluster)  # the last user stopped it
