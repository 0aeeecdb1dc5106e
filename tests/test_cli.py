"""The ``fitrelay`` command line as users meet it, run as real processes: one line on stderr
and a non-zero exit for the failures an operator can fix, global flags after the command,
``--version`` and a top-level help that names every command."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from relay.cli import _parser
from tests.cluster import own_cluster
from tests.conftest import with_database
from tests.server.test_cli_archive import fitrelay

TIMEOUT = 60


def run(
    args: Sequence[str], cwd: Path, command: Sequence[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    env["FITRELAY_METRICS_LISTEN"] = "127.0.0.1:0"
    return subprocess.run(
        [*(command or fitrelay()), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The error line of a failed run, after checking it is the only one of its kind."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fitrelay:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("command", ["serve", "migrate", "index", "reindex", "export"])
def test_connection_refused_is_one_line(command: str, tmp_path: Path) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/fitrelay"
    line = one_line_failure(run([command, "--db-dsn", dsn], tmp_path))
    assert "cannot connect to the database: connection refused" in line


def test_missing_database_and_missing_role(server_dsn: str, tmp_path: Path) -> None:
    missing_db = with_database(server_dsn, f"fitrelay_absent_{os.getpid()}")
    line = one_line_failure(run(["serve", "--db-dsn", missing_db], tmp_path))
    assert f'database "fitrelay_absent_{os.getpid()}" does not exist' in line

    parts = urllib.parse.urlsplit(server_dsn)
    host = parts.netloc.rpartition("@")[2]
    no_role = urllib.parse.urlunsplit(parts._replace(netloc=f"fitrelay_no_such_role@{host}"))
    line = one_line_failure(run(["migrate", "--db-dsn", no_role], tmp_path))
    assert 'role "fitrelay_no_such_role" does not exist' in line


@pytest.mark.slow
async def test_wrong_password_is_one_line(tmp_path: Path) -> None:
    with own_cluster(tmp_path / "pg") as cluster:
        admin = await asyncpg.connect(cluster.dsn)
        try:
            await admin.execute("CREATE ROLE fitrelay_pw LOGIN PASSWORD 'right'")
            await asyncio.to_thread(cluster.allow_password, "fitrelay_pw")
            await admin.execute("SELECT pg_reload_conf()")
        finally:
            await admin.close()
        wrong = cluster.dsn.replace("postgresql://postgres@", "postgresql://fitrelay_pw:wrong@")
        assert wrong != cluster.dsn
        result = await asyncio.to_thread(run, ["migrate", "--db-dsn", wrong], tmp_path)
        line = one_line_failure(result)
        assert "database authentication failed" in line
        assert "wrong" not in line  # the password is not echoed
        right = wrong.replace(":wrong@", ":right@")
        conn = await asyncpg.connect(right)  # the role itself works: only the password was bad
        await conn.close()


def test_port_in_use_is_one_line(db_dsn: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["serve", "--db-dsn", db_dsn, "--port", str(port)], tmp_path)
    line = one_line_failure(result)
    assert line.startswith("fitrelay: cannot listen:") and "address already in use" in line


def test_missing_parquet_extra_is_one_line(tmp_path: Path) -> None:
    # The interpreter is told pyarrow is not installed (an import of it raises ImportError).
    without_pyarrow = [
        sys.executable,
        "-c",
        "import sys; sys.modules['pyarrow'] = None; from relay.cli import main;"
        " raise SystemExit(main())",
    ]
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/fitrelay"
    args = ["export-table", "workouts", "--format", "parquet", "-o", "out.parquet"]
    line = one_line_failure(run([*args, "--db-dsn", dsn], tmp_path, without_pyarrow))
    assert "pip install 'fitrelay[parquet]'" in line
    assert not (tmp_path / "out.parquet").exists()


def test_global_flags_work_after_the_command(tmp_path: Path) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/fitrelay"
    for args in (
        ["serve", "--log-format", "json", "--log-level", "INFO", "--db-dsn", dsn],
        ["--log-format", "json", "serve", "--db-dsn", dsn],
    ):
        result = run(args, tmp_path)
        one_line_failure(result)
        logged = [line for line in result.stderr.splitlines() if line.startswith("{")]
        assert logged, result.stderr
        assert all(json.loads(line)["level"] for line in logged)
    # After the command, a flag overrides the one given before it.
    args = ["--log-level", "INFO", "serve", "--log-level", "ERROR", "--db-dsn", dsn]
    result = run(args, tmp_path)
    assert result.stderr.splitlines() == [one_line_failure(result)]


def test_version_comes_from_package_metadata(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"fitrelay {importlib.metadata.version('fitrelay')}"


def test_top_level_help_names_every_command_and_the_config(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    choices = next(
        action.choices
        for action in _parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    lines = result.stdout.splitlines()
    for name in choices:
        described = [line for line in lines if line.split()[:1] == [name]]
        assert len(described) == 1, f"{name} is not described on one line"
        assert len(described[0].split()) > 2
    assert "config.toml" in result.stdout and "--config" in result.stdout
    assert "FITRELAY_DB_DSN" in result.stdout
