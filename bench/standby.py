"""Throwaway streaming replication on this machine: a primary cluster of its own and hot
standbys made from it with ``pg_basebackup -R``, for the replica tests and the replica bench.

The primary is an :class:`~relay.storage.embedded.EmbeddedPostgres` (the wheel's PostgreSQL,
on a Unix socket in its directory); each standby is a copy of it started with the same
binaries, as the same account, on a socket directory of its own, streaming from the primary
with ``hot_standby_feedback`` on. The machine's own PostgreSQL is not touched: it need not
allow replication. Synchronous (subprocesses): call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from relay.storage.account import ensure_install_access, resolve_account
from relay.storage.embedded import EmbeddedPostgres
from relay.storage.postmaster import PORT, Account, chown_tree, find_install_dir

__all__ = ["Standby", "StreamingCluster", "streaming_cluster"]

log = logging.getLogger(__name__)

_STANDBY_SETTINGS = (
    ("hot_standby", "on"),
    ("hot_standby_feedback", "on"),
    ("max_standby_streaming_delay", "30s"),
    ("wal_receiver_status_interval", "1s"),
    ("shared_buffers", "64MB"),
    ("max_connections", "100"),
    ("fsync", "off"),  # a test copy: the primary holds the data
    ("logging_collector", "off"),
)


def _socket_dsn(socket_dir: Path, database: str = "postgres") -> str:
    host = urllib.parse.quote(str(socket_dir), safe="/")
    return f"postgresql://postgres@/{database}?host={host}&port={PORT}"


class Standby:
    """One hot standby of a :class:`StreamingCluster`'s primary."""

    def __init__(self, root: Path, primary_socket: Path, account: Account, install: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log_file = root / "standby.log"
        self.primary_socket = primary_socket
        self.account = account
        self.install = install

    def dsn(self, database: str = "postgres") -> str:
        return _socket_dsn(self.root, database)

    def _run(self, *args: str | Path, timeout: float = 120) -> None:
        result = subprocess.run(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.account.uid if self.account.switch else None,
            group=self.account.gid if self.account.switch else None,
            cwd="/",
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}")

    def create(self) -> None:
        """Copy the primary (``pg_basebackup -R``: standby.signal and primary_conninfo)."""
        self._run(
            self.install / "bin" / "pg_basebackup",
            "-D", self.data, "-R", "-X", "stream", "-c", "fast",
            "-h", self.primary_socket, "-p", str(PORT), "-U", "postgres",
        )  # fmt: skip

    def start(self) -> None:
        options = ["-c", "listen_addresses=", "-c", f"unix_socket_directories={self.root}"]
        for name, value in _STANDBY_SETTINGS:
            options += ["-c", f"{name}={value}"]
        self._run(
            self.install / "bin" / "pg_ctl", "start", "-w", "-t", "60",
            "-D", self.data, "-l", self.log_file, "-o", " ".join(options),
        )  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown (open queries are cancelled, their connections cut)."""
        if (self.data / "postmaster.pid").exists():
            self._run(self.install / "bin" / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data)


class StreamingCluster:
    """A primary and ``standbys`` hot standbys of it, under a temporary directory."""

    def __init__(self, root: Path, standbys: int) -> None:
        self.root = root
        self.account = resolve_account(log)
        self.install = find_install_dir()
        ensure_install_access(self.install, self.account, log)
        self.primary = EmbeddedPostgres(root / "primary")
        self.primary_dsn = ""
        self.standbys: list[Standby] = []
        self._count = standbys

    def start(self) -> None:
        self.primary_dsn = self.primary.start()
        socket = self.primary.socket_dir
        assert socket is not None
        for i in range(self._count):
            # Short socket paths (a Unix socket path has at most 107 bytes).
            root = Path(tempfile.mkdtemp(prefix=f"fr-sb{i}-", dir="/tmp"))
            os.chmod(root, 0o700)
            if self.account.switch:
                chown_tree(root, self.account.uid, self.account.gid)
            standby = Standby(root, socket, self.account, self.install)
            standby.create()
            standby.start()
            self.standbys.append(standby)

    def primary_database(self, database: str) -> str:
        parts = urllib.parse.urlsplit(self.primary_dsn)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))

    def stop(self) -> None:
        for standby in self.standbys:
            with contextlib.suppress(Exception):
                standby.stop()
            shutil.rmtree(standby.root, ignore_errors=True)
        self.primary.stop()


@contextlib.contextmanager
def streaming_cluster(standbys: int = 1) -> Iterator[StreamingCluster]:
    """A primary with ``standbys`` hot standbys, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fitrelay-repl-") as tmp:
        cluster = StreamingCluster(Path(tmp), standbys)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
