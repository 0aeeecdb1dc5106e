"""Tests for :mod:`relay.storage.embedded`, with real initdb/pg_ctl/postgres processes.

No mocks and no fixed sleeps: process exits are awaited with pidfds, with timeouts.  When the
tests run as root (as in CI containers) the server runs as the ``fitrelay`` account, which is
checked too.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import select
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from relay.storage.embedded import SERVICE_USER, EmbeddedPostgres, EmbeddedPostgresError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses procfs and pidfds")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT = 15.0


def _pidfile(data_dir: Path) -> Path:
    return data_dir / "pg" / "postmaster.pid"


def _postmaster_pid(data_dir: Path) -> int:
    return int(_pidfile(data_dir).read_text().splitlines()[0])


def _exited(pid: int, timeout: float = EXIT_TIMEOUT) -> bool:
    """Wait for process ``pid`` to exit (zombies count as exited)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(pidfd)


def _assert_stopped(data_dir: Path, pid: int) -> None:
    assert _exited(pid), f"postmaster {pid} still running"
    assert not _pidfile(data_dir).exists()


async def _fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _fetchval(dsn: str, sql: str, *args: Any) -> Any:
    rows = asyncio.run(_fetch(dsn, sql, *args))
    return rows[0][0]


def _server_account() -> pwd.struct_passwd:
    if os.geteuid() == 0:
        return pwd.getpwnam(SERVICE_USER)
    return pwd.getpwuid(os.geteuid())


def _proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_start_query_stop_restart_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pg = EmbeddedPostgres(data_dir)
    with pytest.raises(EmbeddedPostgresError):
        _ = pg.dsn
    dsn = pg.start()
    try:
        assert pg.dsn == dsn
        assert pg.start() == dsn  # idempotent
        assert not pg.adopted
        assert dsn.startswith("postgresql://postgres@/postgres?host=")
        assert pg.socket_dir == data_dir.resolve() / "pg"
        pid = _postmaster_pid(data_dir)
        assert _fetchval(dsn, "select 1") == 1
        assert _fetchval(dsn, "show listen_addresses") == ""
        assert _fetchval(dsn, "show fsync") == "on"
        assert _fetchval(dsn, "show server_encoding") == "UTF8"
        asyncio.run(
            _execute(
                dsn,
                "create table kept (id int primary key, note text not null)",
                "insert into kept values (1, 'survives a restart')",
            )
        )
        account = _server_account()
        assert (data_dir / "pg").stat().st_uid == account.pw_uid
        status = _proc_status(pid)
        assert status["Uid"].split()[:2] == [str(account.pw_uid)] * 2
        if os.geteuid() == 0:
            assert status["Groups"] == ""  # root's supplementary groups were dropped
    finally:
        pg.stop()
    _assert_stopped(data_dir, pid)
    pg.stop()  # idempotent
    with pytest.raises(EmbeddedPostgresError):
        _ = pg.dsn

    with EmbeddedPostgres(data_dir) as again:
        pid = _postmaster_pid(data_dir)
        assert _fetchval(again.dsn, "select note from kept where id = 1") == "survives a restart"
    _assert_stopped(data_dir, pid)


def test_a_server_in_use_is_stopped_only_by_its_last_user(tmp_path: Path) -> None:
    """Two users of one server (two instances here; two processes in use): whichever stops
    first leaves it running for the other, and the last one stops it."""
    data_dir = tmp_path / "data"
    for order in ("guest first", "starter first"):
        first = EmbeddedPostgres(data_dir)
        first.start()
        pid = _postmaster_pid(data_dir)
        assert not first.adopted and not first.shared
        second = EmbeddedPostgres(data_dir)
        dsn = second.start()
        assert second.adopted and second.shared
        assert _postmaster_pid(data_dir) == pid  # the same server, not a new one
        early, last = (second, first) if order == "guest first" else (first, second)
        early.stop()
        assert _fetchval(dsn, "select 1") == 1, order  # still up for the other
        assert _postmaster_pid(data_dir) == pid
        last.stop()
        _assert_stopped(data_dir, pid)


def test_adopts_server_of_sigkilled_holder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    holder_code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from relay.storage.embedded import EmbeddedPostgres\n"
        "print(EmbeddedPostgres(Path(sys.argv[1])).start(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    python_path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(python_path))
    with subprocess.Popen(
        [sys.executable, "-c", holder_code, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    ) as holder:
        assert holder.stdout is not None
        holder_dsn = holder.stdout.readline().strip()
        assert holder_dsn, "the holder process did not start the server"
        holder.kill()
        holder.wait(timeout=EXIT_TIMEOUT)
    pid = _postmaster_pid(data_dir)

    pg = EmbeddedPostgres(data_dir)
    try:
        assert pg.start() == holder_dsn
        assert pg.adopted
        assert _postmaster_pid(data_dir) == pid
        assert _fetchval(pg.dsn, "select 1") == 1
    finally:
        pg.stop()
    _assert_stopped(data_dir, pid)


@pytest.mark.parametrize("holder", ["dead-process", "live-non-postgres"])
def test_start_ignores_stale_pid_file(tmp_path: Path, holder: str) -> None:
    data_dir = tmp_path / "data"
    pg = EmbeddedPostgres(data_dir)
    pg.start()
    old_pid = _postmaster_pid(data_dir)
    contents = _pidfile(data_dir).read_text().splitlines()
    pg.stop()
    _assert_stopped(data_dir, old_pid)

    account = _server_account()
    # A process of the server's own account: postgres alone would take the lock as live.
    as_account: dict[str, Any] = (
        {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        if os.geteuid() == 0
        else {}
    )
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE, cwd="/", **as_account) as stand_in:
        assert stand_in.stdin is not None
        if holder == "dead-process":
            stand_in.stdin.close()
            stand_in.wait(timeout=EXIT_TIMEOUT)
        # What a SIGKILLed postmaster leaves behind, with its pid now dead or reused.
        _pidfile(data_dir).write_text("\n".join([str(stand_in.pid), *contents[1:]]) + "\n")
        try:
            dsn = pg.start()
            try:
                assert not pg.adopted
                new_pid = _postmaster_pid(data_dir)
                assert new_pid != stand_in.pid
                assert _fetchval(dsn, "select 1") == 1
            finally:
                pg.stop()
            _assert_stopped(data_dir, new_pid)
        finally:
            if holder != "dead-process":
                stand_in.stdin.close()
                stand_in.wait(timeout=EXIT_TIMEOUT)


def test_long_data_dir_uses_private_socket_dir_in_tmp(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 50) / ("e" * 50) / "data"
    assert len(str(data_dir / "pg" / ".s.PGSQL.5432")) > 107
    pg = EmbeddedPostgres(data_dir)
    dsn = pg.start()
    socket_dir = pg.socket_dir
    assert socket_dir is not None
    try:
        assert socket_dir.parent == Path("/tmp")
        st = socket_dir.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == _server_account().pw_uid
        assert (data_dir / "pg.sockdir").read_text().strip() == str(socket_dir)
        assert _fetchval(dsn, "select 1") == 1
        pg.stop()
        assert pg.start() == dsn  # the recorded directory is reused
        assert pg.socket_dir == socket_dir
    finally:
        pg.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_failed_start_reports_server_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with EmbeddedPostgres(data_dir):
        pass
    with (data_dir / "pg" / "postgresql.conf").open("a") as conf:
        conf.write("no_such_setting = 1\n")
    pg = EmbeddedPostgres(data_dir)
    with pytest.raises(EmbeddedPostgresError, match="no_such_setting"):
        pg.start()
    assert not _pidfile(data_dir).exists()
    with pytest.raises(EmbeddedPostgresError):
        _ = pg.dsn


def test_embedded_server_can_search(tmp_path: Path) -> None:
    """The wheel's server has pg_trgm, so migration 0011 builds the search index and NIP-50
    search is on for a relay run without a configured DSN."""
    from relay.storage.indexing import search_ready
    from relay.storage.migrate import migrate

    async def ready(dsn: str) -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            return await search_ready(conn)
        finally:
            await conn.close()

    with EmbeddedPostgres(tmp_path / "data") as pg:
        assert asyncio.run(ready(pg.dsn))
